"""Time-aware features from a feed's ``derived`` section, computed from past rows only.

Every derived value of a row depends on that row and rows *before* it in event time (within its
entity when ``derived.per_entity``), never on later rows, so scoring a day gives the same values
as scoring it inside a long history — provided the day is given the tail of the previous rows as
``history`` (:func:`warmup` says how much; :func:`history_tail` cuts it). The same function runs
in training, scoring, explanations and drift, so a model always sees features computed one way.

Rolling statistics summarize the *previous* ``window`` rows (or the previous time span), not the
current row: a spike is compared with what came before it instead of diluting its own baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pynomaly_core.data.config import DerivedFeature, FeedConfig

#: |z| is capped here: a change after a flat stretch (std 0) is very anomalous, not infinite
Z_CAP = 1_000.0
_PERIODS = {"hour": 24.0, "dayofweek": 7.0, "month": 12.0}
_ORDER = "__pynomaly_order"
_FROM_HISTORY = "__pynomaly_history"


@dataclass(frozen=True)
class Warmup:
    """How much history before a partition its derived features need."""

    rows: int
    span: pd.Timedelta

    @property
    def needed(self) -> bool:
        return self.rows > 0 or self.span > pd.Timedelta(0)


def span_of(window: int | str | None) -> pd.Timedelta | None:
    """The time span of a ``window`` written as a string (``"1h"``), else None."""
    if not isinstance(window, str):
        return None
    return pd.Timedelta(window.replace(" ", "").replace("sec", "s"))


def warmup(feed: FeedConfig) -> Warmup:
    """The longest look-back of ``feed``'s derived features, in rows and in time."""
    rows, span = 0, pd.Timedelta(0)
    for spec in feed.derived.features if feed.derived is not None else []:
        if spec.window is None:
            rows = max(rows, spec.periods)
        elif isinstance(spec.window, int):
            rows = max(rows, spec.window)
        else:
            span = max(span, span_of(spec.window))
    return Warmup(rows, span)


def history_tail(previous: pd.DataFrame, feed: FeedConfig, start: pd.Timestamp) -> pd.DataFrame:
    """The rows of ``previous`` (earlier data) that the derived features of rows from ``start`` need.

    Per entity: the last :attr:`Warmup.rows` rows before ``start`` and every row within
    :attr:`Warmup.span` before it.
    """
    need = warmup(feed)
    if not need.needed or previous.empty:
        return previous.iloc[0:0]
    times = pd.to_datetime(previous[feed.event_time], utc=True)
    before = previous[(times < start).to_numpy()]
    times = times[(times < start).to_numpy()]
    order = np.argsort(times.to_numpy(), kind="stable")
    before = before.iloc[order]
    times = times.iloc[order]
    keep = np.zeros(len(before), dtype=bool)
    if need.span > pd.Timedelta(0):
        keep |= (times >= start - need.span).to_numpy()
    if need.rows > 0:
        groups = _group_keys(before, feed)
        rank_from_end = before.groupby(groups, sort=False).cumcount(ascending=False) if groups is not None else (
            pd.Series(np.arange(len(before))[::-1], index=before.index))
        keep |= (rank_from_end < need.rows).to_numpy()
    return before[keep]


def derive(frame: pd.DataFrame, feed: FeedConfig, *, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """``frame`` with the derived columns of ``feed`` appended (same rows, same order, same index).

    ``history``: rows before ``frame`` (e.g. :func:`history_tail` of the previous partition);
    they feed the look-back but are not returned.
    """
    if feed.derived is None or not feed.derived_names:
        return frame
    needed = list(dict.fromkeys(c for c in (feed.event_time, feed.entity, *(s.source for s in feed.derived.features)) if c))
    parts = [frame[needed].assign(**{_FROM_HISTORY: False})]
    if history is not None and len(history):
        parts.insert(0, history[needed].assign(**{_FROM_HISTORY: True}))
    work = pd.concat(parts, ignore_index=True)
    work[_ORDER] = np.arange(len(work))
    work["__time"] = pd.to_datetime(work[feed.event_time], utc=True)
    by = [feed.entity] if feed.entity is not None and feed.derived.per_entity else []
    work = work.sort_values([*by, "__time", _ORDER], kind="stable").reset_index(drop=True)
    positions = list(work.groupby(by, sort=False, dropna=False).indices.values()) if by else [np.arange(len(work))]
    columns = {spec.column: _one(work, spec, positions) for spec in feed.derived.features}
    out = pd.DataFrame(columns, index=work.index)
    if feed.derived.calendar is not None:
        out = out.join(_calendar(work["__time"], feed))
    mine = ~work[_FROM_HISTORY].to_numpy(dtype=bool)
    out = out.loc[mine].set_axis(work.loc[mine, _ORDER].to_numpy()).sort_index()
    out.index = frame.index
    return pd.concat([frame, out[feed.derived_names].astype("float64")], axis=1)


def _one(work: pd.DataFrame, spec: DerivedFeature, positions: list[np.ndarray]) -> np.ndarray:
    """One derived column over ``work`` (sorted by entity, then time); ``positions``: each series' rows."""
    values = pd.to_numeric(work[spec.source], errors="coerce").to_numpy(dtype="float64")
    times = work["__time"].to_numpy()
    out = np.full(len(work), np.nan)
    stat = spec.kind.removeprefix("rolling_")
    span = span_of(spec.window)
    for rows in positions:
        series = pd.Series(values[rows], index=pd.DatetimeIndex(times[rows]) if span is not None else None)
        if spec.kind == "lag":
            result = series.shift(spec.periods)
        elif spec.kind == "diff":
            result = series - series.shift(spec.periods)
        else:
            if span is not None:
                rolling = series.rolling(span, closed="left", min_periods=_min_periods(stat))
            else:
                rolling = series.shift(1).rolling(int(spec.window), min_periods=_min_periods(stat))  # type: ignore[arg-type]
            result = _statistic(series, rolling, stat)
        out[rows] = result.to_numpy(dtype="float64")
    return out


def _statistic(series: pd.Series, rolling, stat: str) -> pd.Series:
    if stat == "mean":
        return rolling.mean()
    if stat == "std":
        return rolling.std()
    if stat == "min":
        return rolling.min()
    if stat == "max":
        return rolling.max()
    mean, std = rolling.mean(), rolling.std()
    scale = np.maximum(std.to_numpy(), 1e-9 * (np.abs(mean.to_numpy()) + 1.0))
    return pd.Series(np.clip((series.to_numpy() - mean.to_numpy()) / scale, -Z_CAP, Z_CAP), index=series.index)


def _min_periods(stat: str) -> int:
    return 2 if stat in ("std", "zscore") else 1


def _calendar(times: pd.Series, feed: FeedConfig) -> pd.DataFrame:
    calendar = feed.derived.calendar  # type: ignore[union-attr]
    local = times.dt.tz_convert(calendar.zone)
    out = {}
    for field in calendar.fields:
        if field == "hour":
            value = local.dt.hour + local.dt.minute / 60.0
        elif field == "dayofweek":
            value = local.dt.dayofweek.astype("float64")
        else:
            value = (local.dt.month - 1).astype("float64")
        if calendar.cyclical:
            angle = 2.0 * math.pi * value / _PERIODS[field]
            out[f"{field}_sin"], out[f"{field}_cos"] = np.sin(angle), np.cos(angle)
        else:
            out[field] = value.astype("float64")
    return pd.DataFrame(out, index=times.index)


def _group_keys(frame: pd.DataFrame, feed: FeedConfig):
    if feed.entity is not None and feed.derived is not None and feed.derived.per_entity:
        return frame[feed.entity].to_numpy()
    return None
