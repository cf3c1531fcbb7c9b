"""The review queue: which scored rows of a feed's day a reviewer sees, in which order, and why.

The rows come from the warehouse (``anomaly_scores``, the entity from ``anomaly_attributes``,
the verdicts from ``anomaly_feedback`` and :data:`~pynomaly_review.verdicts.UNSURE_TABLE`). Most
of the queue is the flagged rows, most severe first, then by score (``reason = "top"``). A small
share (``exploration``) is chosen to teach the model most: uncertainty sampling with
:func:`pynomaly_core.lifecycle.feedback.review_order` among the highest-scored ``pool`` of the
day, where a row's uncertainty is how close its score lies to the day's decision threshold
(between the lowest flagged and the highest unflagged score): a verdict on a row the detector
barely flagged, or barely let pass, says the most about where the threshold belongs
(``reason = "explore"``). The model itself is not loaded: the page never unpickles or runs
anything it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pynomaly_core.lifecycle.feedback import review_order
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    FEEDBACK_TABLE,
    SEVERITIES,
    read_partition,
)
from pynomaly_core.warehouse.sql import partition_day, table_clause
from pynomaly_review.verdicts import UNSURE, UNSURE_TABLE, VERDICT_FILTERS

__all__ = [
    "DayRows",
    "QueueFilters",
    "decision_threshold",
    "feed_days",
    "load_day",
    "review_queue",
    "uncertainty",
]

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_SUMMARY_COLUMNS = ("feed", "partition_date", "rows", "anomalies", "confirmed", "rejected")


@dataclass(frozen=True)
class QueueFilters:
    """What the reviewer asked for.

    ``severity``: the severities shown (empty: all); ``entity``: one entity value (``None``: all);
    ``verdict``: one of :data:`~pynomaly_review.verdicts.VERDICT_FILTERS` (``""``: all rows,
    reviewed or not); ``size``: rows in the queue; ``exploration``: the share of them chosen to
    teach the model (0 turns exploration off); ``pool``: the share of the day's highest-ranked
    rows exploration rows are drawn from.
    """

    severity: tuple[str, ...] = ()
    entity: str | None = None
    verdict: str = ""
    size: int = 50
    exploration: float = 0.2
    pool: float = 0.2

    def __post_init__(self) -> None:
        unknown = [s for s in self.severity if s not in SEVERITY_RANK]
        if unknown:
            raise ValueError(f"severity {unknown} is not one of {list(SEVERITIES)}")
        if self.verdict not in VERDICT_FILTERS:
            raise ValueError(
                f"verdict filter {self.verdict!r} is not one of {list(VERDICT_FILTERS)}"
            )
        if not 1 <= self.size <= 1000:
            raise ValueError(f"queue size must be 1..1000, got {self.size}")
        if not 0.0 <= self.exploration < 1.0:
            raise ValueError(f"exploration must be in [0, 1), got {self.exploration}")
        if not 0.0 < self.pool <= 1.0:
            raise ValueError(f"pool must be in (0, 1], got {self.pool}")


@dataclass(frozen=True)
class DayRows:
    """One feed's scored day as the review page needs it: one row per scored record.

    Columns of ``anomaly_scores`` plus ``entity`` (text or missing), ``verdict`` (``confirmed``,
    ``rejected``, ``unsure`` or missing), ``reviewer``, ``note``, ``reviewed_at``; ``attributes``
    is the day's ``anomaly_attributes``.
    """

    feed: str
    day: str
    rows: pd.DataFrame
    entity_name: str | None
    attributes: pd.DataFrame


def feed_days(engine: sa.Engine, schema: str | None = None) -> pd.DataFrame:
    """Every scored (feed, day) with its counts, newest day first, from ``anomaly_daily_summary``.

    Empty (with the columns) when nothing was exported yet.
    """
    if not sa.inspect(engine).has_table(ANOMALY_TABLE.name, schema=schema):
        return pd.DataFrame(columns=list(_SUMMARY_COLUMNS))
    view = table_clause(engine, "anomaly_daily_summary", _SUMMARY_COLUMNS, schema)
    query = sa.select(*(view.c[c] for c in _SUMMARY_COLUMNS)).order_by(
        view.c.partition_date.desc(), view.c.feed
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=list(_SUMMARY_COLUMNS))
    frame["partition_date"] = frame["partition_date"].astype(str)
    return frame


def load_day(engine: sa.Engine, feed: str, day: str, schema: str | None = None) -> DayRows:
    """The scored rows of ``feed`` on ``day`` with their entity and current verdict."""
    partition_day(day)  # ValueError naming a malformed day
    scores = read_partition(engine, ANOMALY_TABLE, feed=feed, partition_date=day, schema=schema)
    attributes = (
        read_partition(engine, ATTRIBUTE_TABLE, feed=feed, partition_date=day, schema=schema)
        if sa.inspect(engine).has_table(ATTRIBUTE_TABLE.name, schema=schema)
        else pd.DataFrame(columns=[c.name for c in ATTRIBUTE_TABLE.columns])
    )
    entities = attributes[attributes["role"] == "entity"]
    entity_name = str(entities["attribute"].iloc[0]) if len(entities) else None
    rows = scores.merge(
        entities[["record_key", "text_value"]].rename(columns={"text_value": "entity"}),
        on="record_key",
        how="left",
    )
    rows = rows.merge(_verdicts(engine, feed, day, schema), on="record_key", how="left")
    return DayRows(feed=feed, day=day, rows=rows, entity_name=entity_name, attributes=attributes)


def _verdicts(engine: sa.Engine, feed: str, day: str, schema: str | None) -> pd.DataFrame:
    """The current verdict per record: ``anomaly_feedback``'s, or ``unsure``; the later one wins."""
    columns = ["record_key", "verdict", "reviewer", "note", "reviewed_at"]
    parts = []
    for spec, verdict in ((FEEDBACK_TABLE, None), (UNSURE_TABLE, UNSURE)):
        if not sa.inspect(engine).has_table(spec.name, schema=schema):
            continue
        frame = read_partition(engine, spec, feed=feed, partition_date=day, schema=schema)
        if verdict is not None:
            frame = frame.assign(verdict=verdict)
        parts.append(frame[columns])
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=columns)
    every = pd.concat(parts, ignore_index=True).sort_values("reviewed_at", kind="stable")
    return every.drop_duplicates("record_key", keep="last")


def decision_threshold(rows: pd.DataFrame) -> float | None:
    """Where the day's decision lies: midway between the lowest flagged and the highest unflagged
    score (one model scores a day); the lowest flagged score when every row was flagged, None
    when none was."""
    score = rows["score"].to_numpy(dtype=float)
    flagged = rows["is_anomaly"].to_numpy(dtype=bool)
    if not flagged.any():
        return None
    if flagged.all():
        return float(score.min())
    return float((score[flagged].min() + score[~flagged].max()) / 2)


def uncertainty(rows: pd.DataFrame) -> np.ndarray:
    """How unsure the day's decision is about each row, in (0, 1]: 1 at the decision threshold.

    Distances to :func:`decision_threshold` are in units of the day's score spread; a day with no
    flagged row puts the threshold at its highest score.
    """
    score = rows["score"].to_numpy(dtype=float)
    if not len(score):
        return np.zeros(0)
    threshold = decision_threshold(rows)
    if threshold is None:
        threshold = float(score.max())
    spread = float(np.std(score)) or 1.0
    return np.asarray(1.0 / (1.0 + np.abs(score - threshold) / spread))


def review_queue(day: DayRows, filters: QueueFilters) -> pd.DataFrame:
    """The rows to show, in order, each with ``reason`` (``top`` or ``explore``) and ``position`` (1..).

    ``top`` rows are flagged rows, most severe first, then by score; ``explore`` rows are the rows
    the day's decision is least sure about among the highest-ranked ``filters.pool`` share of the
    day, not already shown, flagged or not. Filters apply before choosing.
    """
    rows = day.rows.assign(uncertainty=uncertainty(day.rows))
    if filters.severity:
        rows = rows[rows["severity"].isin(filters.severity)]
    if filters.entity:
        rows = rows[rows["entity"] == filters.entity]
    if filters.verdict == "unreviewed":
        rows = rows[rows["verdict"].isna()]
    elif filters.verdict:
        rows = rows[rows["verdict"] == filters.verdict]
    if rows.empty:
        return rows.assign(reason=pd.Series(dtype=str), position=pd.Series(dtype=int))
    rank = rows["severity"].map(SEVERITY_RANK).fillna(0).astype(int)
    ranked = rows.assign(_rank=rank).sort_values(
        ["is_anomaly", "_rank", "score", "record_key"],
        ascending=[False, False, False, True],
        kind="stable",
    )
    ranked = ranked.drop(columns="_rank").reset_index(drop=True)
    # review_order wants "higher = shown first": the rank order as a descending key
    key = np.arange(len(ranked), 0, -1, dtype=float)
    flagged = int(ranked["is_anomaly"].sum())
    explore = filters.exploration > 0
    chosen = review_order(
        key,
        ranked["uncertainty"].to_numpy() if explore else None,
        n=filters.size,
        exploration=filters.exploration,
        pool=filters.pool,
    )
    # "top" means flagged: a day with fewer flagged rows than the queue shows them all, no more
    keep = (chosen["reason"] == "explore") | (chosen["position"] < flagged)
    chosen = chosen[keep]
    queue = ranked.iloc[chosen["position"].to_numpy()].assign(reason=chosen["reason"].to_numpy())
    # explore rows spread evenly through the queue, so a reviewer who stops early still meets some
    is_top = (queue["reason"] == "top").to_numpy()
    tops, explores = int(is_top.sum()), int((~is_top).sum())
    slot = np.empty(len(queue))
    slot[is_top] = np.arange(tops)
    slot[~is_top] = (np.arange(explores) + 1) * (tops + 1) / (explores + 1) - 0.5
    queue = queue.iloc[np.argsort(slot, kind="stable")].reset_index(drop=True)
    return queue.assign(position=np.arange(1, len(queue) + 1))
