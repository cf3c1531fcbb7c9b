// Keyboard triage of the review queue: j/k move, c/r/u record a verdict on the selected row,
// n writes a note, o/Enter opens the row's details. Plain script, no build step.
(function () {
  "use strict";
  var selected = 0;

  function items() {
    return Array.prototype.slice.call(document.querySelectorAll("tbody.item"));
  }

  function select(index) {
    var all = items();
    if (!all.length) { return; }
    selected = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (item, i) { item.classList.toggle("selected", i === selected); });
    all[selected].scrollIntoView({ block: "nearest" });
  }

  function current() {
    return items()[selected];
  }

  function decide(verdict) {
    var item = current();
    if (!item) { return; }
    var button = item.querySelector('button[data-verdict="' + verdict + '"]');
    if (button) { button.click(); }
  }

  function status(text, isError) {
    var element = document.getElementById("status");
    element.textContent = text;
    element.classList.toggle("error", !!isError);
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target && target.classList && target.classList.contains("note")) {
      if (event.key === "Escape") { target.blur(); }
      return; // typing a note: keys are text
    }
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA")) {
      return;
    }
    var item = current();
    switch (event.key) {
      case "j": case "ArrowDown": select(selected + 1); break;
      case "k": case "ArrowUp": select(selected - 1); break;
      case "c": decide("confirmed"); break;
      case "r": decide("rejected"); break;
      case "u": decide("unsure"); break;
      case "n": if (item) { item.querySelector("input.note").focus(); } break;
      case "o": case "Enter": if (item) { item.classList.toggle("open"); } break;
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("button.toggle");
    if (toggle) { toggle.closest("tbody.item").classList.toggle("open"); return; }
    var item = event.target.closest && event.target.closest("tbody.item");
    if (item) { select(items().indexOf(item)); }
  });

  // a recorded verdict replaces its row (outerHTML): find the new row by its id, move to the next
  var pending = null;
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var item = event.detail.elt.closest && event.detail.elt.closest("tbody.item");
    pending = item ? item.id : null;
  });
  document.body.addEventListener("htmx:afterSettle", function (event) {
    var item = pending && document.getElementById(pending);
    if (item) {
      pending = null;
      status("recorded: " + item.dataset.record + " " + item.dataset.verdict);
      select(items().indexOf(item) + 1);
    } else if (event.detail.target && event.detail.target.id === "queue") {
      select(0);
    }
  });

  document.body.addEventListener("htmx:responseError", function (event) {
    pending = null;
    status(event.detail.xhr.responseText || ("error " + event.detail.xhr.status), true);
  });

  document.addEventListener("DOMContentLoaded", function () { select(0); });
})();
