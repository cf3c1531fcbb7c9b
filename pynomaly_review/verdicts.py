"""Recording a reviewer's verdict on one exported record: confirmed, rejected or unsure.

``confirmed`` and ``rejected`` are labels: they go to ``anomaly_feedback`` through
:func:`pynomaly_core.warehouse.upsert_feedback`, the documented write path that checks the
verdict and that the record was exported for that feed and day. ``unsure`` is not a label (the
lifecycle would read anything in ``anomaly_feedback`` as one), so it is kept in the review page's
own table :data:`UNSURE_TABLE` (``review_unsure``, same key), written with
:func:`pynomaly_core.warehouse.upsert_rows`. A record has one current verdict: recording one
withdraws the other kind (an ``unsure`` after a ``confirmed`` removes the label, a ``confirmed``
after an ``unsure`` removes the doubt). Every write is an upsert on (feed, day, record): sending
the same verdict twice leaves one row, with the reviewer and time of the latest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from pynomaly_core.warehouse import (
    FEEDBACK_TABLE,
    FEEDBACK_VERDICTS,
    Column,
    TableSpec,
    ensure_table,
    upsert_feedback,
    upsert_rows,
)
from pynomaly_core.warehouse.feedback import exported_keys
from pynomaly_core.warehouse.sql import dialect_of, partition_day, partition_params, table_clause

__all__ = [
    "UNSURE",
    "UNSURE_TABLE",
    "VERDICTS",
    "VERDICT_FILTERS",
    "RecordedVerdict",
    "record_verdict",
]

UNSURE = "unsure"
#: what a reviewer may answer
VERDICTS = (*FEEDBACK_VERDICTS, UNSURE)
#: the queue's verdict filter: "" all rows, "unreviewed" rows without a verdict, or one verdict
VERDICT_FILTERS = ("", "unreviewed", *VERDICTS)
MAX_NOTE_CHARS = 2000

UNSURE_TABLE = TableSpec(
    name="review_unsure",
    columns=(
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("record_key", "text"),
        Column("reviewer", "text", nullable=True),
        Column("note", "text", nullable=True),
        Column("reviewed_at", "timestamp"),
    ),
    primary_key=("feed", "partition_date", "record_key"),
    order_by=("record_key",),
)
"""Records a reviewer looked at and could not decide (not labels: ``anomaly_feedback`` keeps those)."""


@dataclass(frozen=True)
class RecordedVerdict:
    """What was stored: the verdict, by whom and when (UTC)."""

    feed: str
    day: str
    record_key: str
    verdict: str
    reviewer: str
    note: str | None
    reviewed_at: dt.datetime


def record_verdict(
    engine: sa.Engine,
    *,
    feed: str,
    day: str,
    record_key: str,
    verdict: str,
    reviewer: str,
    note: str | None = None,
    schema: str | None = None,
    now: dt.datetime | None = None,
) -> RecordedVerdict:
    """Store ``reviewer``'s ``verdict`` on one record, replacing the record's previous verdict.

    ``ValueError`` (nothing written) when the verdict is not one of :data:`VERDICTS`, the reviewer
    is empty, the note is longer than :data:`MAX_NOTE_CHARS`, the day is malformed or the record
    was not exported to ``anomaly_scores`` for ``(feed, day)``.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {list(VERDICTS)}; nothing was written")
    if not reviewer or not reviewer.strip():
        raise ValueError("no reviewer: a verdict records who gave it; nothing was written")
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ValueError(
            f"the note has {len(note)} characters, at most {MAX_NOTE_CHARS}; nothing was written"
        )
    partition_day(day)
    moment = now or dt.datetime.now(dt.UTC)
    row = pd.DataFrame(
        {
            "record_key": [record_key],
            "reviewer": [reviewer.strip()],
            "note": [note],
            "reviewed_at": [pd.Timestamp(moment)],
        }
    )
    if verdict in FEEDBACK_VERDICTS:
        # upsert_feedback checks that the record was exported for this feed and day
        upsert_feedback(
            engine, row.assign(verdict=verdict), feed=feed, partition_date=day, schema=schema
        )
        _withdraw(engine, UNSURE_TABLE, feed, day, record_key, schema)
    else:
        _require_exported(engine, feed, day, record_key, schema)
        ensure_table(engine, UNSURE_TABLE, schema)
        upsert_rows(engine, UNSURE_TABLE, row, feed=feed, partition_date=day, schema=schema)
        _withdraw(engine, FEEDBACK_TABLE, feed, day, record_key, schema)
    return RecordedVerdict(
        feed=feed,
        day=day,
        record_key=record_key,
        verdict=verdict,
        reviewer=reviewer.strip(),
        note=note,
        reviewed_at=moment,
    )


def _require_exported(
    engine: sa.Engine, feed: str, day: str, record_key: str, schema: str | None
) -> None:
    if not exported_keys(engine, [record_key], feed, partition_day(day), schema):
        raise ValueError(
            f"record {record_key!r} was not exported to anomaly_scores for feed {feed!r} on {day}; "
            "nothing was written"
        )


def _withdraw(
    engine: sa.Engine,
    spec: TableSpec,
    feed: str,
    day: str,
    record_key: str,
    schema: str | None,
) -> None:
    """Delete the record's row of ``spec`` (the verdict of the other kind), if any.

    Run after the new verdict committed: should it fail, the page still shows the newer verdict
    (the later ``reviewed_at`` wins when both exist).
    """
    if not sa.inspect(engine).has_table(spec.name, schema=schema):
        return
    table = table_clause(engine, spec.name, ("feed", "partition_date", "record_key"), schema)
    params = partition_params(dialect_of(engine), feed, partition_day(day))
    with engine.begin() as conn:
        conn.execute(
            sa.delete(table).where(
                table.c.feed == params["feed"],
                table.c.partition_date == params["day"],
                table.c.record_key == record_key,
            )
        )
