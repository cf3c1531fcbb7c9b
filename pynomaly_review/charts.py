"""Small inline SVG charts, rendered on the server: no JavaScript, no images to fetch.

Every piece is a literal ``Markup`` template filled with ``format``, which escapes each value:
a feature name from the warehouse cannot inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup

__all__ = ["range_bar", "series_plot", "shap_bars"]

_UP = "#c0392b"  # towards anomalous
_DOWN = "#2e6da4"  # towards normal


def _number(value: float) -> str:
    return f"{value:.4g}"


def shap_bars(contributions: Sequence[tuple[str, float]], width: int = 320) -> Markup:
    """Horizontal bars of SHAP contributions (positive = towards anomalous), largest first."""
    items = [(name, float(v)) for name, v in contributions if v is not None and math.isfinite(v)]
    if not items:
        return Markup('<p class="muted">no SHAP explanation for this row</p>')
    row_h, label_w = 22, 120
    scale = max(abs(v) for _, v in items) or 1.0
    half = (width - label_w - 60) / 2
    zero = label_w + half
    height = row_h * len(items)
    parts = [
        Markup(
            '<svg class="chart shap" role="img" width="{w}" height="{h}" '
            'aria-label="SHAP contributions">'
            '<line x1="{z:.1f}" y1="0" x2="{z:.1f}" y2="{y2}" stroke="#999"/>'
        ).format(w=width, h=height + 4, z=zero, y2=height)
    ]
    for i, (name, value) in enumerate(items):
        y = i * row_h + 3
        length = abs(value) / scale * half
        up = value >= 0
        parts.append(
            Markup(
                '<text x="{lx}" y="{ty}" text-anchor="end">{name}</text>'
                '<rect x="{x:.1f}" y="{y}" width="{bw:.1f}" height="{bh}" fill="{colour}">'
                "<title>{name}: {shown}</title></rect>"
                '<text x="{vx:.1f}" y="{ty}" text-anchor="{anchor}">{shown}</text>'
            ).format(
                lx=label_w - 6,
                ty=y + 13,
                name=name,
                x=zero if up else zero - length,
                y=y,
                bw=max(length, 1),
                bh=row_h - 8,
                colour=_UP if up else _DOWN,
                shown=_number(value),
                vx=zero + length + 4 if up else zero - length - 4,
                anchor="start" if up else "end",
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def range_bar(
    value: float, low: float, high: float, median: float | None = None, width: int = 220
) -> Markup:
    """The normal range ``[low, high]`` as a grey band, the median as a tick, ``value`` as a dot."""
    lo, hi = min(low, value), max(high, value)
    span = (hi - lo) or 1.0
    pad = 8
    inner = width - 2 * pad

    def x(v: float) -> float:
        return pad + (v - lo) / span * inner

    outside = not low <= value <= high
    parts = [
        Markup(
            '<svg class="chart range" role="img" width="{w}" height="18" '
            'aria-label="value {v} against the range {lo} to {hi}">'
            '<rect x="{x:.1f}" y="5" width="{bw:.1f}" height="8" fill="#d5dbe0"/>'
        ).format(
            w=width,
            v=_number(value),
            lo=_number(low),
            hi=_number(high),
            x=x(low),
            bw=max(x(high) - x(low), 1),
        )
    ]
    if median is not None:
        parts.append(
            Markup('<line x1="{m:.1f}" y1="3" x2="{m:.1f}" y2="15" stroke="#777"/>').format(
                m=x(median)
            )
        )
    parts.append(
        Markup('<circle cx="{cx:.1f}" cy="9" r="5" fill="{colour}"/></svg>').format(
            cx=x(value), colour=_UP if outside else _DOWN
        )
    )
    return Markup("").join(parts)


def series_plot(
    scores: Sequence[float],
    flagged: Sequence[bool],
    at: int,
    threshold: float | None = None,
    width: int = 360,
    height: int = 90,
) -> Markup:
    """The score series as a line, flagged points red, the reviewed point circled, the threshold dashed."""
    values = [float(v) for v in scores]
    if len(values) < 2:
        return Markup('<p class="muted">not enough points around this row to draw a series</p>')
    pad = 6
    low = min([*values, threshold] if threshold is not None else values)
    high = max([*values, threshold] if threshold is not None else values)
    span = (high - low) or 1.0

    def xy(i: int, v: float) -> tuple[float, float]:
        return (
            pad + i / (len(values) - 1) * (width - 2 * pad),
            height - pad - (v - low) / span * (height - 2 * pad),
        )

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
    parts = [
        Markup(
            '<svg class="chart series" role="img" width="{w}" height="{h}" '
            'aria-label="anomaly score around this row">'
            '<polyline points="{line}" fill="none" stroke="#555" stroke-width="1.2"/>'
        ).format(w=width, h=height, line=line)
    ]
    if threshold is not None:
        parts.append(
            Markup(
                '<line x1="{x1}" y1="{y:.1f}" x2="{x2}" y2="{y:.1f}" stroke="{colour}" '
                'stroke-dasharray="4 3" stroke-width="1"><title>decision threshold</title></line>'
            ).format(x1=pad, x2=width - pad, y=xy(0, threshold)[1], colour=_UP)
        )
    for i, (v, hit) in enumerate(zip(values, flagged, strict=True)):
        if hit:
            cx, cy = xy(i, v)
            parts.append(
                Markup('<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{colour}"/>').format(
                    cx=cx, cy=cy, colour=_UP
                )
            )
    cx, cy = xy(at, values[at])
    parts.append(
        Markup(
            '<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5.5" fill="none" stroke="#000" '
            'stroke-width="1.5"><title>this row</title></circle></svg>'
        ).format(cx=cx, cy=cy)
    )
    return Markup("").join(parts)
