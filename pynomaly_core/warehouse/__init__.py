"""The warehouse: the tables Pynomaly exports to (anomaly scores, quarantined rows, feedback, notifications).

Every table is partitioned by ``(feed, partition_date)`` and described once by a
:class:`TableSpec`; a Dagster run owns one partition and writes it with
:func:`replace_partition`, in one transaction, so re-runs replace rather than append and a
failed load leaves the previous content. PostgreSQL (psycopg 3, binary COPY) and SQLite (WAL,
``executemany``) are both supported; table and schema names pass :func:`validate_identifier`
and reach SQL through SQLAlchemy Core constructs (or, for COPY and the DDL SQLAlchemy cannot
build, the dialect's identifier preparer), so a mixed-case schema keeps its case; values are
always bound parameters or COPY data.

Modules
-------
``sql``        engines, dialects, quoting, advisory locks, binding days and moments
``tables``     column kinds, table specs, :func:`ensure_table` (create and migrate)
``frames``     validating a frame against a table, converting values in and out
``load``       :func:`replace_partition`, :func:`insert_rows`, :func:`upsert_rows`,
               :func:`delete_before`, reads (:func:`read_partition`, :func:`select_rows`)
``views``      the BI views (:func:`create_views`)
``catalog``    every table and view at once (:func:`ensure_warehouse`)
``feedback``   reviewer verdicts (:func:`upsert_feedback`, :func:`read_feedback`)
``anomalies``  the anomaly table's rows from scores and explanations (:func:`anomaly_rows`)
``attributes`` entity, passthrough and feature values of the scored rows (:func:`attribute_rows`)
"""

from __future__ import annotations

from pynomaly_core.warehouse.anomalies import anomaly_rows
from pynomaly_core.warehouse.attributes import attribute_rows
from pynomaly_core.warehouse.catalog import WAREHOUSE_TABLES, ensure_warehouse
from pynomaly_core.warehouse.feedback import read_feedback, upsert_feedback
from pynomaly_core.warehouse.load import (
    count_partition,
    delete_before,
    insert_rows,
    lock_rows,
    read_partition,
    replace_partition,
    select_rows,
    upsert_rows,
)
from pynomaly_core.warehouse.sql import (
    make_engine,
    qualified,
    validate_identifier,
    warehouse_url_default,
)
from pynomaly_core.warehouse.tables import (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    BI_VIEWS,
    FEEDBACK_TABLE,
    FEEDBACK_VERDICTS,
    NOTIFICATION_SEVERITIES,
    NOTIFICATIONS_TABLE,
    QUARANTINE_TABLE,
    SEVERITIES,
    Column,
    ColumnKind,
    TableSpec,
    ensure_table,
)
from pynomaly_core.warehouse.views import ANOMALY_TOP_N, create_views

__all__ = [
    "ANOMALY_TABLE",
    "ANOMALY_TOP_N",
    "ATTRIBUTE_TABLE",
    "BI_VIEWS",
    "FEEDBACK_TABLE",
    "FEEDBACK_VERDICTS",
    "NOTIFICATIONS_TABLE",
    "NOTIFICATION_SEVERITIES",
    "QUARANTINE_TABLE",
    "SEVERITIES",
    "WAREHOUSE_TABLES",
    "Column",
    "ColumnKind",
    "TableSpec",
    "anomaly_rows",
    "attribute_rows",
    "count_partition",
    "create_views",
    "delete_before",
    "ensure_table",
    "ensure_warehouse",
    "insert_rows",
    "lock_rows",
    "make_engine",
    "qualified",
    "read_feedback",
    "read_partition",
    "replace_partition",
    "select_rows",
    "upsert_feedback",
    "upsert_rows",
    "validate_identifier",
    "warehouse_url_default",
]
