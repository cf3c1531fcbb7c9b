"""The BI views over the anomaly and feedback tables.

``anomaly_daily_summary``, ``anomaly_top`` and ``model_versions_in_use`` are plain SQL views,
valid on PostgreSQL and SQLite alike, so a BI tool reads the same names on either backend. They
are SQLAlchemy Core selects emitted with ``CREATE VIEW`` (:class:`sqlalchemy.schema.CreateView`),
so every name is quoted by the dialect (a schema ``Anomalies`` stays ``"Anomalies"``) and no SQL
is assembled from strings.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateView, DropView

from pynomaly_core.warehouse.sql import advisory_lock, dialect_of, qualified, table_clause
from pynomaly_core.warehouse.tables import (
    ANOMALY_TABLE,
    BI_VIEWS,
    FEEDBACK_TABLE,
    SEVERITIES,
    TableSpec,
    ensure_table,
)

__all__ = ["ANOMALY_TOP_N", "VIEWS", "create_views"]

ANOMALY_TOP_N = 100
"""Rows per ``(feed, partition_date)`` kept by the ``anomaly_top`` view."""

VIEWS = BI_VIEWS


def _source(bind: sa.Engine | sa.Connection, spec: TableSpec, schema: str | None) -> sa.TableClause:
    return table_clause(bind, spec.name, tuple(c.name for c in spec.columns), schema)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _view_selects(bind: sa.Engine | sa.Connection, schema: str | None) -> dict[str, sa.Select[Any]]:
    """The SELECT of each view, feedback joined on the record's key."""
    table = _source(bind, ANOMALY_TABLE, schema)
    feedback = _source(bind, FEEDBACK_TABLE, schema).alias("f")

    s = table.alias("s")
    # typed boolean, without a CAST in the SQL (SQLite stores 0/1)
    flagged = sa.type_coerce(s.c.is_anomaly, sa.Boolean)
    reviewed = sa.and_(
        feedback.c.feed == s.c.feed,
        feedback.c.partition_date == s.c.partition_date,
        feedback.c.record_key == s.c.record_key,
    )
    summary = (
        sa.select(
            s.c.feed,
            s.c.partition_date,
            sa.func.count().label("rows"),
            _count_if(flagged).label("anomalies"),
            sa.func.avg(sa.cast(sa.case((flagged, 1), else_=0), sa.Double)).label("anomaly_rate"),
            *(
                _count_if(s.c.severity == level).label(level)
                for level in SEVERITIES
                if level != "none"
            ),
            sa.func.avg(s.c.score).label("mean_score"),
            sa.func.max(s.c.score).label("max_score"),
            _count_if(feedback.c.verdict == "confirmed").label("confirmed"),
            _count_if(feedback.c.verdict == "rejected").label("rejected"),
            sa.func.max(s.c.model_version).label("model_version"),
            sa.func.count(sa.distinct(s.c.model_version)).label("model_versions"),
        )
        .select_from(s.outerjoin(feedback, reviewed))
        .group_by(s.c.feed, s.c.partition_date)
    )

    scores = table.alias("a")
    is_anomaly = sa.type_coerce(scores.c.is_anomaly, sa.Boolean)
    rank = sa.func.row_number().over(
        partition_by=(scores.c.feed, scores.c.partition_date),
        order_by=(scores.c.score.desc(), scores.c.record_key),
    )
    ranked = sa.select(*scores.c, rank.label("anomaly_rank")).where(is_anomaly).subquery("s")
    reviewed = sa.and_(
        feedback.c.feed == ranked.c.feed,
        feedback.c.partition_date == ranked.c.partition_date,
        feedback.c.record_key == ranked.c.record_key,
    )
    explanation = [
        ranked.c[f"{part}_{i}"] for i in (1, 2, 3) for part in ("feature", "contribution")
    ]
    top = (
        sa.select(
            *(
                ranked.c[name]
                for name in (
                    "feed",
                    "partition_date",
                    "anomaly_rank",
                    "record_key",
                    "event_time",
                    "score",
                    "normalized_score",
                    "p_value",
                    "severity",
                    "model_name",
                    "model_version",
                    "run_id",
                    "explanation_method",
                )
            ),
            *explanation,
            ranked.c.top_features,
            feedback.c.verdict,
            feedback.c.reviewer,
            feedback.c.reviewed_at,
        )
        .select_from(ranked.outerjoin(feedback, reviewed))
        .where(ranked.c.anomaly_rank <= ANOMALY_TOP_N)
    )

    versions = sa.select(
        scores.c.feed,
        scores.c.model_name,
        scores.c.model_version,
        sa.func.min(scores.c.partition_date).label("first_partition"),
        sa.func.max(scores.c.partition_date).label("last_partition"),
        sa.func.count(sa.distinct(scores.c.partition_date)).label("partitions"),
        sa.func.count().label("rows"),
        _count_if(is_anomaly).label("anomalies"),
        sa.func.max(scores.c.scored_at).label("last_scored_at"),
    ).group_by(scores.c.feed, scores.c.model_name, scores.c.model_version)
    return {"anomaly_daily_summary": summary, "anomaly_top": top, "model_versions_in_use": versions}


def create_views(engine: sa.Engine, schema: str | None = None) -> None:
    """Create (or re-create) the BI views over the anomaly and feedback tables.

    ``anomaly_daily_summary``: one row per ``(feed, partition_date)`` with ``rows``,
    ``anomalies``, ``anomaly_rate``, counts per severity (``low`` .. ``critical``),
    ``mean_score``, ``max_score``, feedback counts (``confirmed``, ``rejected``),
    ``model_version`` (the greatest) and ``model_versions`` (distinct versions).
    ``anomaly_top``: the ``ANOMALY_TOP_N`` highest-scoring anomalies per
    ``(feed, partition_date)``, numbered by ``anomaly_rank`` (1 = highest score), with
    their p-value, severity, SHAP explanation and feedback verdict.
    ``model_versions_in_use``: per ``(feed, model_name, model_version)`` the partitions
    and rows it scored. Tables are created (or migrated) if needed.

    A view is dropped and created again in one transaction (``CREATE OR REPLACE`` cannot change
    a view's columns), so grants on the views are those of the schema's default privileges
    (``deploy/sql/bi_readonly_role.sql``).
    """
    dialect = dialect_of(engine)
    ensure_table(engine, ANOMALY_TABLE, schema)
    ensure_table(engine, FEEDBACK_TABLE, schema)
    with engine.begin() as conn:
        if dialect == "postgresql":
            advisory_lock(conn, qualified(conn, ANOMALY_TABLE.name, schema), "views")
        for name, select in _view_selects(conn, schema).items():
            view = CreateView(select, name, schema=schema)
            conn.execute(DropView(view.table, if_exists=True))
            conn.execute(view)
