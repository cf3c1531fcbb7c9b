"""The BI views over the anomaly and feedback tables.

``anomaly_daily_summary``, ``anomaly_top`` and ``model_versions_in_use`` are plain SQL views,
valid on PostgreSQL and SQLite alike, so a BI tool reads the same names on either backend.
"""

from __future__ import annotations

import sqlalchemy as sa

from pynomaly_core.warehouse.sql import advisory_lock, dialect_of, qualified
from pynomaly_core.warehouse.tables import ANOMALY_TABLE, FEEDBACK_TABLE, SEVERITIES, ensure_table

__all__ = ["ANOMALY_TOP_N", "VIEWS", "create_views"]

ANOMALY_TOP_N = 100
"""Rows per ``(feed, partition_date)`` kept by the ``anomaly_top`` view."""


def _view_sql(source: str, feedback: str) -> dict[str, str]:
    anomaly = "CASE WHEN is_anomaly THEN 1 ELSE 0 END"
    level = "SUM(CASE WHEN severity = '{0}' THEN 1 ELSE 0 END) AS {0}"
    severities = ",\n       ".join(level.format(s) for s in SEVERITIES if s != "none")
    explanation = ", ".join(f"s.feature_{i}, s.contribution_{i}" for i in (1, 2, 3))
    return {
        "anomaly_daily_summary": f"""
SELECT s.feed, s.partition_date,
       COUNT(*) AS "rows",
       SUM({anomaly}) AS anomalies,
       CAST(SUM({anomaly}) AS DOUBLE PRECISION) / COUNT(*) AS anomaly_rate,
       {severities},
       AVG(score) AS mean_score,
       MAX(score) AS max_score,
       SUM(CASE WHEN f.verdict = 'confirmed' THEN 1 ELSE 0 END) AS confirmed,
       SUM(CASE WHEN f.verdict = 'rejected' THEN 1 ELSE 0 END) AS rejected,
       MAX(s.model_version) AS model_version,
       COUNT(DISTINCT s.model_version) AS model_versions
FROM {source} AS s
LEFT JOIN {feedback} AS f
  ON f.feed = s.feed AND f.partition_date = s.partition_date AND f.record_key = s.record_key
GROUP BY s.feed, s.partition_date""",
        "anomaly_top": f"""
SELECT s.feed, s.partition_date, s.anomaly_rank, s.record_key, s.event_time, s.score,
       s.normalized_score, s.p_value, s.severity, s.model_name, s.model_version, s.run_id,
       s.explanation_method, {explanation}, s.top_features, f.verdict, f.reviewer, f.reviewed_at
FROM (
    SELECT *,
           ROW_NUMBER() OVER (PARTITION BY feed, partition_date
                              ORDER BY score DESC, record_key) AS anomaly_rank
    FROM {source}
    WHERE is_anomaly
) AS s
LEFT JOIN {feedback} AS f
  ON f.feed = s.feed AND f.partition_date = s.partition_date AND f.record_key = s.record_key
WHERE s.anomaly_rank <= {ANOMALY_TOP_N}""",
        "model_versions_in_use": f"""
SELECT feed, model_name, model_version,
       MIN(partition_date) AS first_partition,
       MAX(partition_date) AS last_partition,
       COUNT(DISTINCT partition_date) AS partitions,
       COUNT(*) AS "rows",
       SUM({anomaly}) AS anomalies,
       MAX(scored_at) AS last_scored_at
FROM {source}
GROUP BY feed, model_name, model_version""",
    }


VIEWS = ("anomaly_daily_summary", "anomaly_top", "model_versions_in_use")


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
    and rows it scored. Tables are created if missing.
    """
    dialect = dialect_of(engine)
    ensure_table(engine, ANOMALY_TABLE, schema)
    ensure_table(engine, FEEDBACK_TABLE, schema)
    source = qualified(dialect, ANOMALY_TABLE.name, schema)
    feedback = qualified(dialect, FEEDBACK_TABLE.name, schema)
    with engine.begin() as conn:
        if dialect == "postgresql":
            advisory_lock(conn, source, "views")
        for name, body in _view_sql(source, feedback).items():
            view = qualified(dialect, name, schema)
            # DROP + CREATE in one transaction: CREATE OR REPLACE cannot change a view's columns
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view}"))
            conn.execute(sa.text(f"CREATE VIEW {view} AS {body}"))

