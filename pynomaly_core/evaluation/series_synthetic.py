"""Synthetic anomalies for time-ordered data, injected *into* the series.

Tabular recipes (:mod:`pynomaly_core.evaluation.synthetic`) add new, independent rows; in a
sensor series that is meaningless — a single value is rarely anomalous on its own, its place in
the sequence is. These recipes modify a copy of a normal stretch of the series in place, the
way real faults look (the taxonomy of Lai et al., "Revisiting time series outlier detection",
NeurIPS 2021, and the fault types of SKAB and NAB):

* ``spike`` — one row jumps by 4–8 robust standard deviations (a point outlier);
* ``level_shift`` — a run of rows moves by 2–4 robust standard deviations (a stuck offset, a
  recalibration, a leak);
* ``variance`` — a run of rows oscillates 3–5 times wider around its local level (vibration);
* ``stuck`` — a run of rows repeats the value before it (a frozen sensor);
* ``contextual`` — a run of rows takes the values the same series had about half a day earlier:
  each value is ordinary, but not at that time of day.

Each event touches one to all of the chosen numeric columns of one entity's series; the rows it
touches are labelled 1. Derived features (lags, windows) must be computed *after* injection, so
that they see the anomaly as a detector would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

KINDS: tuple[str, ...] = ("spike", "level_shift", "variance", "stuck", "contextual")
SPIKE_SIGMAS = (4.0, 8.0)
SHIFT_SIGMAS = (2.0, 4.0)
VARIANCE_FACTOR = (3.0, 5.0)
#: rows per event for the kinds that last (a spike is one row)
RUN_ROWS = (6, 24)
CONTEXT_LAG = pd.Timedelta(hours=12)


@dataclass
class SeriesInjection:
    """The modified copy, its labels (1 = injected) and one record per event."""

    frame: pd.DataFrame
    y: np.ndarray
    events: pd.DataFrame


def inject_series(
    frame: pd.DataFrame,
    *,
    event_time: str,
    columns: Sequence[str],
    entity: str | None = None,
    n_events: int = 10,
    kinds: Sequence[str] = KINDS,
    random_state: int | None = 0,
) -> SeriesInjection:
    """Inject ``n_events`` anomalies of ``kinds`` into a copy of ``frame`` (index and order kept)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown series anomaly kind(s) {unknown}; choose from {list(KINDS)}")
    if not columns:
        raise ValueError("no numeric columns to inject series anomalies into")
    rng = np.random.default_rng(random_state)
    out = frame.copy()
    for col in columns:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    y = np.zeros(len(out), dtype=np.int8)
    # naive UTC datetime64 (tz-aware values become objects in numpy)
    times = pd.to_datetime(out[event_time], utc=True).dt.tz_convert(None)
    keys = (
        out[entity].astype(str).to_numpy() if entity is not None else np.zeros(len(out), dtype=int)
    )
    series = {k: np.flatnonzero(keys == k) for k in pd.unique(keys)}
    for k, rows in series.items():  # time order within each series, positions into `out`
        series[k] = rows[np.argsort(times.to_numpy()[rows], kind="stable")]
    scale = {c: _robust_scale(out[c].to_numpy()) for c in columns}
    taken = np.zeros(len(out), dtype=bool)
    events = []
    order = list(kinds)
    for i in range(n_events):
        kind = order[i % len(order)]
        key = list(series)[rng.integers(len(series))]
        rows = series[key]
        length = 1 if kind == "spike" else int(rng.integers(RUN_ROWS[0], RUN_ROWS[1] + 1))
        if len(rows) < length + 2:
            continue
        placed = None
        for _ in range(10):  # a contextual event needs half a day of the same series before it
            placed = _place(rows, length, taken, rng)
            if (
                placed is None
                or kind != "contextual"
                or _contextual(out, out.columns.get_loc(columns[0]), placed, rows, times)
                is not None
            ):
                break
            placed = None
        if placed is None:
            continue
        cols = list(rng.choice(columns, size=int(rng.integers(1, len(columns) + 1)), replace=False))
        _apply(out, kind, placed, rows, cols, scale, times, rng)
        taken[placed] = True
        y[placed] = 1
        events.append(
            {
                "kind": kind,
                "entity": key,
                "rows": len(placed),
                "columns": ",".join(cols),
                "start": times.iloc[placed[0]].tz_localize("UTC"),
            }
        )
    return SeriesInjection(
        out, y, pd.DataFrame(events, columns=["kind", "entity", "rows", "columns", "start"])
    )


def _robust_scale(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return 1.0
    q1, q3 = np.percentile(x, [25, 75])
    scale = (q3 - q1) / 1.349
    if scale <= 0:
        scale = float(np.std(x))
    return float(scale) if scale > 0 else max(abs(float(np.median(x))) * 0.05, 1.0)


def _place(
    rows: np.ndarray, length: int, taken: np.ndarray, rng: np.random.Generator, tries: int = 20
) -> np.ndarray | None:
    """A run of ``length`` consecutive rows of one series, not touching an earlier event."""
    for _ in range(tries):
        start = int(rng.integers(1, len(rows) - length))  # keep a row before it (stuck needs one)
        window = rows[start - 1 : start + length + 1]
        if not taken[window].any():
            return rows[start : start + length]
    return None


def _apply(
    out: pd.DataFrame,
    kind: str,
    placed: np.ndarray,
    rows: np.ndarray,
    cols: list[str],
    scale: dict[str, float],
    times: pd.Series,
    rng: np.random.Generator,
) -> None:
    for col in cols:
        loc = out.columns.get_loc(col)
        values = out.iloc[placed, loc].to_numpy(dtype="float64")
        sign = rng.choice([-1.0, 1.0])
        if kind == "spike":
            new = values + sign * rng.uniform(*SPIKE_SIGMAS) * scale[col]
        elif kind == "level_shift":
            new = values + sign * rng.uniform(*SHIFT_SIGMAS) * scale[col]
        elif kind == "variance":
            level = np.nanmedian(values)
            new = (
                level
                + (values - level) * rng.uniform(*VARIANCE_FACTOR)
                + rng.normal(0, scale[col], len(values))
            )
        elif kind == "stuck":
            new = np.full(len(values), out.iat[_previous(rows, placed[0]), loc])
        else:
            new = _contextual(out, loc, placed, rows, times)
        out.iloc[placed, loc] = new


def _previous(rows: np.ndarray, position: int) -> int:
    idx = int(np.flatnonzero(rows == position)[0])
    return int(rows[idx - 1])


def _contextual(
    out: pd.DataFrame, loc: int, placed: np.ndarray, rows: np.ndarray, times: pd.Series
) -> np.ndarray | None:
    """The values of the same series about :data:`CONTEXT_LAG` before each placed row, or None."""
    series_times = times.iloc[rows].to_numpy()
    wanted = times.iloc[placed].to_numpy() - CONTEXT_LAG.to_timedelta64()
    idx = np.searchsorted(series_times, wanted, side="right")  # the last row at or before
    if (idx <= 0).any():
        return None
    found = rows[idx - 1]
    gap = np.abs(times.iloc[found].to_numpy() - wanted)
    if (gap > np.timedelta64(2, "h")).any():
        return None
    return cast("np.ndarray | None", out.iloc[found, loc].to_numpy(dtype="float64"))
