"""Everything a warehouse holds, created (and migrated) at once.

A feed's export creates every table and view, not only the ones it writes, so that a fresh
warehouse (the demo's, a new schema) shows BI users the whole documented set from the first
export on: ``notifications`` before the first maintenance run, ``quarantine`` before the first
bad row, ``anomaly_feedback`` before the first review. It also lets the read-only BI role script
(``deploy/sql/bi_readonly_role.sql``) run once after the first export and find every table it
grants or withholds.
"""

from __future__ import annotations

import sqlalchemy as sa

from pynomaly_core.warehouse.tables import (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    FEEDBACK_TABLE,
    NOTIFICATIONS_TABLE,
    QUARANTINE_TABLE,
    TableSpec,
    ensure_table,
)
from pynomaly_core.warehouse.views import create_views

__all__ = ["WAREHOUSE_TABLES", "ensure_warehouse"]

WAREHOUSE_TABLES: tuple[TableSpec, ...] = (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    FEEDBACK_TABLE,
    QUARANTINE_TABLE,
    NOTIFICATIONS_TABLE,
)
"""The tables Pynomaly writes, in creation order (``docs/anomaly_table.md``)."""


def ensure_warehouse(engine: sa.Engine, schema: str | None = None) -> None:
    """Create or migrate every table of :data:`WAREHOUSE_TABLES`, then (re)create the BI views.

    Idempotent; see :func:`~pynomaly_core.warehouse.tables.ensure_table` for the migrations.
    """
    for spec in WAREHOUSE_TABLES:
        ensure_table(engine, spec, schema)
    create_views(engine, schema)
