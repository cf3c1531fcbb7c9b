"""Headless Debian chromium driven over its DevTools protocol, for the tests that check a UI in a
real browser (the Dagster UI through the proxy in tests/system, the review page in tests/review).

scripts/browser.sh installs chromium when it is missing (scripts/test.sh runs it first).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.system.services import REPO, free_port

__all__ = ["Chromium", "chromium_or_skip", "until", "visible_text"]


def chromium_or_skip() -> str:
    """Debian's chromium; scripts/browser.sh installs it when missing (scripts/test.sh runs it first)."""
    if shutil.which("chromium") is None:
        installed = subprocess.run(
            ["bash", str(REPO / "scripts" / "browser.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if shutil.which("chromium") is None:
            pytest.skip(
                f"chromium is not installed and scripts/browser.sh could not install it: "
                f"{installed.stderr.strip()[-500:]}"
            )
    return shutil.which("chromium")


class Chromium:
    """Headless chromium driven over its DevTools protocol; with ``authorization``, it sends that
    ``Authorization`` header with every request of the page (the HTML, the UI's GraphQL fetches,
    its websocket).

    Credentials in the URL (``http://user:pass@host/``) would not do: the page's own URL then
    carries them, and the UI's fetches of URLs resolved against it are refused by the browser.
    """

    def __init__(self, browser: str, profile: Path, authorization: str | None = None) -> None:
        port = free_port()
        self.log = profile.with_suffix(".log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--window-size=1600,1000",
                    f"--remote-debugging-port={port}",
                    f"--user-data-dir={profile}",
                    "about:blank",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        from websockets.sync.client import connect

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/json/list", timeout=5
                ) as response:
                    pages = [t for t in json.loads(response.read()) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(
                    f"chromium's DevTools did not come up on port {port}: {self.log_tail()}"
                )
            time.sleep(0.5)
        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.calls = 0
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1600,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Network.enable")
        if authorization is not None:
            self.call("Network.setExtraHTTPHeaders", headers={"Authorization": authorization})

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events (network, page) come in between: skip to the answer
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.calls:
                if "error" in message:
                    raise AssertionError(f"chromium {method}: {message['error']}")
                return message["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML") or ""

    def press(self, key: str) -> None:
        """Type one printable key as a person does: key down (with its text), key up."""
        code = f"Key{key.upper()}" if key.isalpha() else ""
        common = {"key": key, "code": code, "windowsVirtualKeyCode": ord(key.upper())}
        self.call("Input.dispatchKeyEvent", type="keyDown", text=key, **common)
        self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.DOTALL)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def until(check: Callable[[], object], timeout: float = 60, interval: float = 0.5) -> object:
    """``check()``'s first truthy value, or its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
