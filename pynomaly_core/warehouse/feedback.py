"""Reviewer feedback on exported anomalies: recording verdicts and reading them back as labels.

BI users (or a review tool) record one verdict per exported record in ``anomaly_feedback``
(:data:`~pynomaly_core.warehouse.tables.FEEDBACK_TABLE`); a new verdict on the same record
replaces the old one. The lifecycle and monitoring read them back as labels.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from pynomaly_core.warehouse.load import upsert_rows
from pynomaly_core.warehouse.sql import (
    dialect_of,
    partition_day,
    partition_params,
    qualified,
    sql_day,
)
from pynomaly_core.warehouse.tables import FEEDBACK_TABLE, ensure_table

__all__ = ["read_feedback", "upsert_feedback"]


def upsert_feedback(
    engine: sa.Engine,
    verdicts: pd.DataFrame,
    *,
    feed: str,
    partition_date: str,
    schema: str | None = None,
) -> int:
    """Record verdicts on one partition's records; a record's new verdict replaces its old one.

    ``verdicts`` has the columns ``record_key``, ``verdict`` (``confirmed`` or ``rejected``),
    ``reviewer``, ``note`` (both may be missing values) and ``reviewed_at`` (timezone-aware).
    The table is created if missing. Returns the rows written.
    """
    ensure_table(engine, FEEDBACK_TABLE, schema)
    return upsert_rows(engine, FEEDBACK_TABLE, verdicts, feed=feed, partition_date=partition_date, schema=schema)


def read_feedback(
    engine: sa.Engine,
    *,
    feed: str,
    start: str,
    end: str,
    schema: str | None = None,
) -> pd.DataFrame:
    """Feedback verdicts of ``feed`` for partitions ``start``..``end`` (inclusive ISO days).

    Columns ``record_key``, ``partition_date``, ``label`` (1 = confirmed anomaly, 0 =
    rejected). The table is created if missing, so BI users always find it.
    """
    ensure_table(engine, FEEDBACK_TABLE, schema)
    dialect = dialect_of(engine)
    table = qualified(dialect, FEEDBACK_TABLE.name, schema)
    first, last = partition_day(start), partition_day(end)
    params = {**partition_params(dialect, feed, first), "last": sql_day(dialect, last)}
    query = (
        f"SELECT record_key, partition_date, verdict FROM {table} "
        "WHERE feed = :feed AND partition_date >= :day AND partition_date <= :last ORDER BY reviewed_at"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query), params).all()
    frame = pd.DataFrame(rows, columns=["record_key", "partition_date", "verdict"])
    frame["label"] = (frame["verdict"] == "confirmed").astype(int)
    return frame[["record_key", "partition_date", "label"]]
