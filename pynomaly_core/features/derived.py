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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.data.settings import DerivedFeature, DerivedSettings

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


def warmup(feed: FeedConfig | Derivation) -> Warmup:
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


def history_tail(
    previous: pd.DataFrame, feed: FeedConfig | Derivation, start: pd.Timestamp
) -> pd.DataFrame:
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
        rank_from_end = (
            before.groupby(groups, sort=False).cumcount(ascending=False)
            if groups is not None
            else (pd.Series(np.arange(len(before))[::-1], index=before.index))
        )
        keep |= (rank_from_end < need.rows).to_numpy()
    return before[keep]


def warmup_covered(
    history: pd.DataFrame,
    feed: FeedConfig | Derivation,
    start: pd.Timestamp,
    entities: Sequence[object] | np.ndarray | None = None,
) -> bool:
    """Whether ``history`` (the earlier rows read so far, before :func:`history_tail` cuts them)
    holds the whole warm-up of the rows from ``start``.

    Rows: at least :attr:`Warmup.rows` rows before ``start`` per entity of ``entities`` (default:
    those in ``history``; all rows together without per-entity derivation). Span: ``history``
    reaches back to ``start - span``. A sparse feed may need several earlier partitions.
    """
    need = warmup(feed)
    if not need.needed:
        return True
    if history.empty:
        return False
    times = pd.to_datetime(history[feed.event_time], utc=True)
    if need.span > pd.Timedelta(0) and times.min() > start - need.span:
        return False
    history = history[(times < start).to_numpy()]
    if need.rows > 0:
        groups = _group_keys(history, feed)
        if groups is None:
            return len(history) >= need.rows
        counts = pd.Series(groups).value_counts()
        keys = counts.index if entities is None else pd.unique(np.asarray(entities, dtype=object))
        return all(counts.get(k, 0) >= need.rows for k in keys)
    return True


def derive(
    frame: pd.DataFrame, feed: FeedConfig | Derivation, *, history: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``frame`` with the derived columns of ``feed`` appended (same rows, same order, same index).

    ``history``: rows before ``frame`` (e.g. :func:`history_tail` of the previous partition);
    they feed the look-back but are not returned.
    """
    if feed.derived is None or not feed.derived_names:
        return frame
    needed = feed.derived.inputs(feed.event_time, feed.entity)
    parts = [frame[needed].assign(**{_FROM_HISTORY: False})]
    if history is not None and len(history):
        parts.insert(0, history[needed].assign(**{_FROM_HISTORY: True}))
    work = pd.concat(parts, ignore_index=True)
    work[_ORDER] = np.arange(len(work))
    work["__time"] = pd.to_datetime(work[feed.event_time], utc=True)
    by = [feed.entity] if feed.entity is not None and feed.derived.per_entity else []
    work = work.sort_values([*by, "__time", _ORDER], kind="stable").reset_index(drop=True)
    positions = (
        list(work.groupby(by, sort=False, dropna=False).indices.values())
        if by
        else [np.arange(len(work))]
    )
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
        series = pd.Series(
            values[rows], index=pd.DatetimeIndex(times[rows]) if span is not None else None
        )
        if spec.kind == "lag":
            result = series.shift(spec.periods)
        elif spec.kind == "diff":
            result = series - series.shift(spec.periods)
        elif span is None and stat in ("mean", "std", "zscore"):
            result = _exact_statistic(series, int(spec.window), stat)  # type: ignore[arg-type]
        else:
            if span is not None:
                rolling = series.rolling(span, closed="left", min_periods=_min_periods(stat))
            else:
                rolling = series.shift(1).rolling(int(spec.window), min_periods=_min_periods(stat))  # type: ignore[arg-type]
            result = _statistic(series, rolling, stat)
        out[rows] = result.to_numpy(dtype="float64")
    return out


#: elements per block of sliding windows in :func:`_exact_statistic` (bounds its memory: 32 MB)
_BLOCK_ELEMENTS = 1 << 22


def _exact_statistic(series: pd.Series, window: int, stat: str) -> pd.Series:
    """Mean, std or z-score over the ``window`` previous rows, computed per window in two passes.

    pandas' rolling mean and variance are online sums carried from the first row, so their last
    bits depend on where the series starts: a day scored after its warm-up tail and the same day
    inside a long history differ by the accumulated rounding, which a near-flat window (std
    1e-5 of a level of 80) amplifies into a different z-score. Each window here is computed
    from its own rows only, so the result does not depend on what came before the window.
    """
    values = series.to_numpy(dtype="float64")
    n = len(values)
    padded = np.r_[
        np.full(window, np.nan), values[:-1] if n else values
    ]  # row i sees rows i-window..i-1
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    block = max(1, _BLOCK_ELEMENTS // window)
    views = np.lib.stride_tricks.sliding_window_view(
        padded, window
    )  # views[i] = the window of row i
    with np.errstate(all="ignore"):
        for start in range(0, n, block):
            w = views[start : start + block]
            count = np.sum(~np.isnan(w), axis=1)
            m = np.nansum(w, axis=1) / np.where(count > 0, count, 1)
            var = np.nansum((w - m[:, None]) ** 2, axis=1) / np.where(count > 1, count - 1, 1)
            mean[start : start + block] = np.where(count >= 1, m, np.nan)
            std[start : start + block] = np.where(count >= 2, np.sqrt(var), np.nan)
    if stat == "mean":
        return pd.Series(mean, index=series.index)
    if stat == "std":
        return pd.Series(std, index=series.index)
    scale = np.maximum(std, 1e-9 * (np.abs(mean) + 1.0))
    return pd.Series(np.clip((values - mean) / scale, -Z_CAP, Z_CAP), index=series.index)


def _statistic(series: pd.Series, rolling: Any, stat: str) -> pd.Series:
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
    return pd.Series(
        np.clip((series.to_numpy() - mean.to_numpy()) / scale, -Z_CAP, Z_CAP), index=series.index
    )


def _min_periods(stat: str) -> int:
    return 2 if stat in ("std", "zscore") else 1


def _calendar(times: pd.Series, feed: FeedConfig | Derivation) -> pd.DataFrame:
    calendar = feed.derived.calendar if feed.derived is not None else None
    if calendar is None:
        raise ValueError("calendar features need the feed's derived.calendar settings")
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


def _group_keys(frame: pd.DataFrame, feed: FeedConfig | Derivation) -> np.ndarray | None:
    if feed.entity is not None and feed.derived is not None and feed.derived.per_entity:
        return cast("np.ndarray | None", frame[feed.entity].to_numpy())
    return None


@dataclass(frozen=True)
class Derivation:
    """What a fitted model needs to derive its features the way it was trained, without the feed.

    It has the attributes :func:`derive`, :func:`warmup` and :func:`history_tail` read from a feed
    (``event_time``, ``entity``, ``derived``, ``derived_names``), so a model saved with it derives
    the same columns after loading, even if the feed file changes later.
    """

    event_time: str
    entity: str | None
    derived: DerivedSettings

    @classmethod
    def of(cls, feed: FeedConfig) -> Derivation | None:
        """The derivation of ``feed``, or None when it declares no derived features."""
        if feed.derived is None or not feed.derived_names:
            return None
        return cls(feed.event_time, feed.entity, feed.derived)

    @property
    def derived_names(self) -> list[str]:
        """The derived column names, in the order :func:`derive` appends them."""
        return self.derived.names()

    @property
    def columns(self) -> list[str]:
        """The columns deriving reads (event time, entity, sources)."""
        return self.derived.inputs(self.event_time, self.entity)

    def sources(self) -> dict[str, str]:
        """Derived column -> the feed column it is computed from (``"<event_time>"`` for calendar ones)."""
        out = {spec.column: spec.source for spec in self.derived.features}
        for name in self.derived_names:
            out.setdefault(name, self.event_time)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_time": self.event_time,
            "entity": self.entity,
            "derived": self.derived.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Derivation:
        return cls(
            value["event_time"], value["entity"], DerivedSettings.model_validate(value["derived"])
        )
