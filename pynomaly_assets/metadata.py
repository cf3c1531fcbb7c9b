"""How metadata reads in the Dagster UI: one rounding rule, an inline score histogram, report links.

The UI prints a float metadata value as it is stored (``0.012345678912``), shows a markdown
value longer than 1,000 characters only behind "[Show Markdown]" (so a base64 PNG never shows
inline), renders a table value inline, a URL as a link that opens a new tab and a path as text
with a copy button. So every asset and check passes its metadata through :func:`rounded`,
the score histogram is a :func:`histogram_table`, and a report gets a link when
``$PYNOMALY_REPORTS_URL`` says where the reports directory is served (:func:`report_links`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import numpy as np

#: significant digits of every float in metadata: 0.01234 stays 0.01234 and a p-value of
#: 3.2e-09 stays 3.2e-09 (rounding to decimal places would make it 0)
SIGNIFICANT_DIGITS = 4
#: bins of the score histogram below the threshold, and above it (the flagged rows)
BINS_BELOW = 8
BINS_ABOVE = 4
_BAR = 20


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` to ``digits`` significant digits; NaN and infinities unchanged."""
    value = float(value)
    if not math.isfinite(value) or value == 0.0:
        return value
    return float(f"{value:.{digits}g}")


def _round_value(value: Any) -> Any:
    if isinstance(value, dg.MetadataValue):  # tables, paths, markdown: as they are
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        return significant(float(value))
    if isinstance(value, Mapping):
        return {k: _round_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round_value(v) for v in value]
    return value


def rounded(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with every float (plain, numpy, ``MetadataValue.float`` or inside JSON) to
    :data:`SIGNIFICANT_DIGITS` significant digits; everything else unchanged."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            out[key] = dg.MetadataValue.float(significant(value.value))
        elif isinstance(value, dg.JsonMetadataValue):
            out[key] = dg.MetadataValue.json(_round_value(value.data))
        else:
            out[key] = _round_value(value)
    return out


HISTOGRAM_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("scores", "string", description="score interval (low, high]"),
        dg.TableColumn("rows", "int"),
        dg.TableColumn("share", "float", description="share of the partition's rows"),
        dg.TableColumn("bar", "string", description="rows, log scale"),
        dg.TableColumn("flagged", "bool", description="scores above the threshold are anomalies"),
    ]
)


def _edges(low: float, high: float, threshold: float) -> np.ndarray:
    """Bin edges with the threshold as one of them: every bin is wholly flagged or not (no score
    below the threshold: a first bin ``[threshold, threshold]`` holds the rows scoring exactly it)."""
    below = (
        np.linspace(low, threshold, BINS_BELOW + 1)
        if low < threshold
        else np.array([threshold, threshold])
    )
    above = np.linspace(threshold, high, BINS_ABOVE + 1)[1:] if high > threshold else np.array([])
    return np.concatenate([below, above])


def histogram_table(scores: np.ndarray, threshold: float) -> dg.TableMetadataValue:
    """The score histogram as a table the UI shows inline, the threshold a bin edge.

    Bins are right-closed, ``(low, high]`` (the first includes its low end), so the rows of the
    bins marked ``flagged`` are exactly the rows scoring above the threshold.
    """
    scores = np.asarray(scores, dtype="float64")
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return dg.MetadataValue.table(records=[], schema=HISTOGRAM_SCHEMA)
    low, high = min(float(scores.min()), threshold), max(float(scores.max()), threshold)
    edges = _edges(low, high, threshold)
    bins = np.clip(np.searchsorted(edges, scores, side="left") - 1, 0, len(edges) - 2)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    top = math.log10(1 + int(counts.max()))
    records = []
    for i, count in enumerate(counts):
        lo, hi = significant(edges[i]), significant(edges[i + 1])
        width = math.ceil(_BAR * math.log10(1 + int(count)) / top) if top else 0
        records.append(
            dg.TableRecord(
                {
                    "scores": f"{'[' if i == 0 else '('}{lo:g}, {hi:g}]",
                    "rows": int(count),
                    "share": significant(count / len(scores)),
                    "bar": "█" * width,
                    "flagged": bool(i > 0 and edges[i] >= threshold),
                }
            )
        )
    return dg.MetadataValue.table(records=records, schema=HISTOGRAM_SCHEMA)


def report_url(path: Path, base_dir: str | Path, base_url: str | None) -> str | None:
    """The URL of a file under the reports directory where ``base_url`` serves it (None: no URL
    configured, or the file lies outside the directory)."""
    if not base_url:
        return None
    try:
        relative = Path(path).resolve().relative_to(Path(base_dir).resolve())
    except ValueError:
        return None
    return f"{base_url.rstrip('/')}/{quote(relative.as_posix())}"


def report_links(base_dir: str | Path, base_url: str | None, **paths: Path) -> dict[str, Any]:
    """``{name: MetadataValue.path}`` for each report file, plus ``{name}_url`` (a link the UI
    opens in a new tab) when the reports directory is served at ``base_url``."""
    out: dict[str, Any] = {}
    for name, path in paths.items():
        out[name] = dg.MetadataValue.path(str(path))
        url = report_url(path, base_dir, base_url)
        if url is not None:
            out[f"{name}_url"] = dg.MetadataValue.url(url)
    return out
