"""Reviewer feedback on exported anomalies: recording verdicts and reading them back as labels.

BI users (or a review tool) record one verdict per exported record in ``anomaly_feedback``
(:data:`~pynomaly_core.warehouse.tables.FEEDBACK_TABLE`); a new verdict on the same record
replaces the old one. The lifecycle and monitoring read them back as labels, so a verdict that
is misspelt (``'Confirmed!'``), dated on a day that does not exist or given to a record that was
never exported would silently become a wrong label: :func:`upsert_feedback`, the documented write
path, refuses such rows and names them, and the table refuses any other verdict (a CHECK
constraint) for those who write it with plain SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from pynomaly_core.warehouse.load import upsert_rows
from pynomaly_core.warehouse.sql import (
    dialect_of,
    partition_day,
    partition_params,
    qualified,
    sql_day,
    table_clause,
    validate_feed,
)
from pynomaly_core.warehouse.tables import (
    ANOMALY_TABLE,
    FEEDBACK_TABLE,
    FEEDBACK_VERDICTS,
    ensure_table,
)

__all__ = ["read_feedback", "upsert_feedback"]

_SHOWN_ROWS = 10
_KEYS_PER_QUERY = 1_000  # bound parameters per IN (...): far below SQLite's and PostgreSQL's limits


def upsert_feedback(
    engine: sa.Engine,
    verdicts: pd.DataFrame,
    *,
    feed: str,
    partition_date: str,
    schema: str | None = None,
) -> int:
    """Record verdicts on one partition's exported records; a record's new verdict replaces its old one.

    ``verdicts`` has the columns ``record_key``, ``verdict`` (``confirmed`` or ``rejected``),
    ``reviewer``, ``note`` (both may be missing values) and ``reviewed_at`` (timezone-aware).
    Before anything is written, ``ValueError`` names the bad rows (their index, record key and
    value) when a verdict is not one of :data:`FEEDBACK_VERDICTS`, a record key is missing or is
    not in ``anomaly_scores`` for ``(feed, partition_date)``, or ``partition_date`` is not a real
    ``YYYY-MM-DD`` day; nothing is written then. The table is created (or migrated) if needed.
    Returns the rows written.
    """
    where = f"upsert_feedback(feed={feed!r}, partition_date={partition_date!r})"
    try:
        day = partition_day(partition_date)
        validate_feed(feed)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if not isinstance(verdicts, pd.DataFrame) or not {"record_key", "verdict"} <= set(
        verdicts.columns
    ):
        raise ValueError(
            f"{where}: verdicts must be a DataFrame with columns record_key, verdict, reviewer, "
            "note, reviewed_at"
        )
    problems = _bad_verdicts(verdicts) + _bad_keys(engine, verdicts, feed, day, schema)
    if problems:
        raise ValueError(f"{where}: nothing was written; " + "; ".join(problems))
    ensure_table(engine, FEEDBACK_TABLE, schema)
    return upsert_rows(
        engine, FEEDBACK_TABLE, verdicts, feed=feed, partition_date=partition_date, schema=schema
    )


def _listed(rows: pd.DataFrame, column: str) -> str:
    shown = ", ".join(
        f"index {index!r}: {value!r}" for index, value in rows[column].head(_SHOWN_ROWS).items()
    )
    return shown + (f" (and {len(rows) - _SHOWN_ROWS} more)" if len(rows) > _SHOWN_ROWS else "")


def _bad_verdicts(verdicts: pd.DataFrame) -> list[str]:
    bad = verdicts[~verdicts["verdict"].isin(FEEDBACK_VERDICTS)]
    if bad.empty:
        return []
    return [
        (
            f"{len(bad)} row(s) with a verdict other than {list(FEEDBACK_VERDICTS)} "
            f"(record_key -> verdict) {_pairs(bad)}"
        )
    ]


def _pairs(rows: pd.DataFrame) -> str:
    shown = ", ".join(
        f"index {index!r}: {key!r} -> {verdict!r}"
        for index, key, verdict in zip(
            rows.index[:_SHOWN_ROWS], rows["record_key"], rows["verdict"], strict=False
        )
    )
    return shown + (f" (and {len(rows) - _SHOWN_ROWS} more)" if len(rows) > _SHOWN_ROWS else "")


def _bad_keys(
    engine: sa.Engine, verdicts: pd.DataFrame, feed: str, day: dt.date, schema: str | None
) -> list[str]:
    """The rows whose record key is missing or was not exported to ``anomaly_scores`` for the partition."""
    keys = verdicts["record_key"]
    missing = verdicts[keys.isna() | ~keys.map(lambda k: isinstance(k, str))]
    problems = (
        [f"{len(missing)} row(s) without a text record_key: {_listed(missing, 'record_key')}"]
        if len(missing)
        else []
    )
    given = verdicts.loc[~verdicts.index.isin(missing.index), "record_key"]
    exported = exported_keys(engine, given.unique(), feed, day, schema)
    unknown = verdicts.loc[given.index[~given.isin(exported)]]
    if len(unknown):
        table = qualified(engine, ANOMALY_TABLE.name, schema)
        problems.append(
            f"{len(unknown)} row(s) whose record_key was not exported to {table} for this feed and "
            f"day (a typo, another day, or the day is not scored yet): {_listed(unknown, 'record_key')}"
        )
    return problems


def exported_keys(
    engine: sa.Engine, keys: Iterable[str], feed: str, day: dt.date, schema: str | None
) -> set[str]:
    """Those of ``keys`` that ``anomaly_scores`` holds for ``(feed, day)``; none when the table does not exist."""
    keys = list(keys)
    if not keys or not sa.inspect(engine).has_table(ANOMALY_TABLE.name, schema=schema):
        return set()
    dialect = dialect_of(engine)
    table = table_clause(
        engine, ANOMALY_TABLE.name, ("feed", "partition_date", "record_key"), schema
    )
    params = partition_params(dialect, feed, day)
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            query = sa.select(table.c.record_key).where(
                table.c.feed == params["feed"],
                table.c.partition_date == params["day"],
                table.c.record_key.in_(keys[start : start + _KEYS_PER_QUERY]),
            )
            found.update(conn.execute(query).scalars())
    return found


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
    table = table_clause(
        engine, FEEDBACK_TABLE.name, tuple(c.name for c in FEEDBACK_TABLE.columns), schema
    )
    first, last = partition_day(start), partition_day(end)
    params = partition_params(dialect, feed, first)
    query = (
        sa.select(table.c.record_key, table.c.partition_date, table.c.verdict)
        .where(
            table.c.feed == params["feed"],
            table.c.partition_date >= params["day"],
            table.c.partition_date <= sql_day(dialect, last),
        )
        .order_by(table.c.reviewed_at)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["record_key", "partition_date", "verdict"])
    frame["label"] = (frame["verdict"] == "confirmed").astype(int)
    return frame[["record_key", "partition_date", "label"]]
