"""The weekly maintenance report: its sections, the HTML and JSON files, and the thresholds it crossed.

:func:`weekly_sections` assembles the week's sections from what the stages produced;
:func:`render_report` writes the week's HTML and JSON; :func:`crossed_thresholds` says which
configured thresholds the week crossed. The sections it reads (all optional)::

    quality       {"success_percent": float | [float, ...]}      min_quality_success_percent
    drift         {"drift_share": float | [float, ...]}           max_drift_share
    retrains      {"count": int}                                  max_retrains
    performance   {"average_precision": float | [float, ...]}    min_average_precision
    model_health  {"unreproducible": int}  (see health_section)  max_unreproducible_versions (0)
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pynomaly_core.storage import atomic_write_text

__all__ = [
    "SECTION_ORDER",
    "THRESHOLDS",
    "crossed_thresholds",
    "json_safe",
    "render_report",
    "weekly_sections",
]

SECTION_ORDER = ("quality", "drift", "performance", "retrains", "cleanup", "model_health")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")

# threshold -> (section, metric, direction): "max" crosses above, "min" below
THRESHOLDS: dict[str, tuple[str, str, str]] = {
    "max_drift_share": ("drift", "drift_share", "max"),
    "min_quality_success_percent": ("quality", "success_percent", "min"),
    "max_retrains": ("retrains", "count", "max"),
    "min_average_precision": ("performance", "average_precision", "min"),
    "max_unreproducible_versions": ("model_health", "unreproducible", "max"),
}


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="none">–</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return html.escape(f"{value:.6g}" if math.isfinite(value) else str(value))
    if isinstance(value, dict):
        return _key_value_table(value)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return _records_table(value)
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def _key_value_table(values: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in values.items()
    )
    return f'<table class="kv">{rows}</table>'


def _records_table(records: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for record in records:
        columns += [str(k) for k in record if str(k) not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(record.get(c))}</td>" for c in columns) + "</tr>"
        for record in records
    )
    return f'<table class="records"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}"
    "h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ddd;padding:3px 8px;"
    "text-align:left;vertical-align:top;font-size:.9em}th{background:#f4f4f4}.none{color:#999}"
)


def render_report(
    feed: str, week: str, sections: dict[str, dict[str, Any]], out_dir: Path
) -> tuple[Path, Path]:
    """Write the week's report: one self-contained HTML page and one JSON file.

    The HTML has one section per entry of ``sections`` (``quality``, ``drift``,
    ``performance``, ``retrains``, ``cleanup``, ``model_health`` first, in that order, then
    any other): scalars as a key/value table, lists of dicts as tables, every value
    HTML-escaped; no script, no external resource. The JSON holds ``feed``, ``week``,
    ``generated_at`` and the sections (non-finite numbers as null). Both files are written
    atomically as ``<out_dir>/maintenance_<feed>_<week>.html|json``.

    Returns
    -------
    (html_path, json_path)
    """
    for what, value in (("feed", feed), ("week", week)):
        if not isinstance(value, str) or _SAFE_NAME.fullmatch(value) is None:
            raise ValueError(
                f"report {what} {value!r} must be 1-128 characters from [A-Za-z0-9_.-] (it names the file)"
            )
    for name, section in sections.items():
        if not isinstance(section, Mapping):
            raise TypeError(f"report section {name!r} must be a dict, got {type(section).__name__}")
    ordered = [s for s in SECTION_ORDER if s in sections] + [
        s for s in sections if s not in SECTION_ORDER
    ]
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    safe_sections = {name: json_safe(sections[name]) for name in ordered}
    document = {"feed": feed, "week": week, "generated_at": generated, "sections": safe_sections}

    title = f"Pynomaly weekly maintenance: {feed}, week {week}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Generated {html.escape(generated)}.</p>",
    ]
    for name in ordered:
        section = safe_sections[name]
        heading = name.replace("_", " ").capitalize()
        parts.append(f'<section id="{html.escape(name)}"><h2>{html.escape(heading)}</h2>')
        parts.append(_key_value_table(section) if section else "<p>Nothing this week.</p>")
        parts.append("</section>")
    parts.append("</body></html>")

    out_dir = Path(out_dir)
    html_path = out_dir / f"maintenance_{feed}_{week}.html"
    json_path = out_dir / f"maintenance_{feed}_{week}.json"
    atomic_write_text(json_path, json.dumps(document, indent=2, allow_nan=False))
    atomic_write_text(html_path, "\n".join(parts))
    return html_path, json_path


def _numbers(value: Any) -> list[float]:
    values = value if isinstance(value, list | tuple) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        try:
            number = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return out


def crossed_thresholds(
    sections: dict[str, dict[str, Any]], thresholds: dict[str, float]
) -> list[str]:
    """The thresholds the week crossed, as human-readable reasons (empty: nothing to notify).

    ``thresholds`` keys are those of :data:`THRESHOLDS` (other keys not starting with
    ``max_``/``min_``, e.g. ``cooldown_hours``, are ignored, so a settings model can be passed
    as its ``model_dump()``); ``max_unreproducible_versions`` defaults to 0. A metric may be a
    number or a list of numbers (e.g. per day): ``max_`` thresholds compare the largest,
    ``min_`` the smallest. A section or metric that is absent is not a crossing.
    """
    unknown = [k for k in thresholds if k.startswith(("max_", "min_")) and k not in THRESHOLDS]
    if unknown:
        raise ValueError(
            f"unknown notification threshold(s) {unknown}; known: {sorted(THRESHOLDS)}"
        )
    limits = {
        "max_unreproducible_versions": 0.0,
        **{k: v for k, v in thresholds.items() if k in THRESHOLDS},
    }
    reasons = []
    for key, limit in limits.items():
        if limit is None:
            continue
        section, metric, direction = THRESHOLDS[key]
        numbers = _numbers((sections.get(section) or {}).get(metric))
        if not numbers:
            continue
        if direction == "max" and max(numbers) > limit:
            reasons.append(f"{section}.{metric} {max(numbers):.4g} is above {key} = {limit:g}")
        elif direction == "min" and min(numbers) < limit:
            reasons.append(f"{section}.{metric} {min(numbers):.4g} is below {key} = {limit:g}")
    return reasons


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: numpy and pandas scalars unwrapped, non-finite floats as None, dates as ISO text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


QUALITY_KEYS = (
    "success",
    "success_percent",
    "evaluated",
    "failed",
    "rows",
    "docs_path",
    "failures",
)
"""What the report keeps of the ``data_quality_report`` summary."""


def _finite(values: list[Any]) -> list[float]:
    return [
        float(v)
        for v in values
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v)
    ]


def weekly_sections(
    *,
    quality: Mapping[str, Any],
    model_health: Mapping[str, Any],
    cleanup: Mapping[str, Any],
    drift_days: Sequence[Mapping[str, Any]],
    performance_days: Sequence[Mapping[str, Any]],
    retrains: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """The week's report sections from what the maintenance and monitoring stages produced.

    ``quality`` is the data-quality summary, ``model_health`` the health section (its
    ``champion_week`` becomes a section of its own), ``cleanup`` the retention section,
    ``drift_days``/``performance_days`` the daily drift reports and performance verdicts in day
    order, ``retrains`` one dict per retraining run of the week. Daily metrics are kept per day
    and as lists of their finite values, which :func:`crossed_thresholds` compares.
    """
    return {
        "quality": {k: quality.get(k) for k in QUALITY_KEYS},
        "drift": {
            "days": len(drift_days),
            "drift_share": _finite([_judged_share(d) for d in drift_days]),
            "score_psi": _finite([d.get("score_psi") for d in drift_days]),
            "per_day": [
                {
                    "day": d.get("partition"),
                    "drift_share": _judged_share(d),
                    "score_psi": d.get("score_psi"),
                    "alert_rate": d.get("alert_rate"),
                    "drifted": ", ".join(_judged_features(d)),
                }
                for d in drift_days
            ],
        },
        "performance": {
            "days": len(performance_days),
            "average_precision": _finite([p.get("average_precision") for p in performance_days]),
            "degraded_days": [
                p["partition"] for p in performance_days if p.get("severity") != "ok"
            ],
            "per_day": [
                {
                    "day": p.get("partition"),
                    "mode": p.get("mode"),
                    "severity": p.get("severity"),
                    "average_precision": p.get("average_precision"),
                    "canary_recall": p.get("canary_recall"),
                    "alert_rate": p.get("alert_rate"),
                    "model_version": p.get("model_version"),
                }
                for p in performance_days
            ],
        },
        "retrains": {"count": len(retrains), "runs": retrains},
        "cleanup": dict(cleanup),
        "model_health": {k: v for k, v in model_health.items() if k != "champion_week"},
        "champion_week": model_health.get("champion_week", {}),
    }


def _judged_share(day: Mapping[str, Any]) -> Any:
    """The drift share the day's check judged: features past the feed's normal range when the day
    was judged against its normal days, Evidently's share under the fixed cut-offs. Evidently's
    share alone flags nearly every normal day of a moving real series (docs/monitoring.md)."""
    share = day.get("abnormal_feature_share")
    return day.get("drift_share") if share is None else share


def _judged_features(day: Mapping[str, Any]) -> list[str]:
    if day.get("abnormal_feature_share") is not None:
        return list(day.get("abnormal_features") or [])
    return list(day.get("drifted_columns") or [])
