"""The warehouse's tables: column kinds, table specs, and creating or migrating a table.

Every table is partitioned by ``(feed, partition_date)``. A :class:`TableSpec` is the one
description of a table that creation (:func:`ensure_table`), loading, reading and the BI views
all follow; the specs of the tables Pynomaly writes are defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import sqlalchemy as sa

from pynomaly_core.severity import LEVELS
from pynomaly_core.warehouse.sql import (
    Dialect,
    advisory_lock,
    dialect_of,
    qualified,
    quote,
    validate_identifier,
)

__all__ = [
    "ANOMALY_TABLE",
    "FEEDBACK_TABLE",
    "FEEDBACK_VERDICTS",
    "NOTIFICATIONS_TABLE",
    "NOTIFICATION_SEVERITIES",
    "PARTITION_COLUMNS",
    "QUARANTINE_TABLE",
    "SEVERITIES",
    "Column",
    "ColumnKind",
    "TableSpec",
    "ensure_table",
]

ColumnKind = Literal["text", "float", "int", "bool", "timestamp", "date", "json"]

PARTITION_COLUMNS = ("feed", "partition_date")
SEVERITIES = LEVELS
"""Allowed ``severity`` values, as ``pynomaly_core.severity`` assigns them."""

_SQL_TYPES: dict[Dialect, dict[ColumnKind, str]] = {
    "postgresql": {
        "text": "TEXT",
        "float": "DOUBLE PRECISION",
        "int": "BIGINT",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMPTZ",
        "date": "DATE",
        "json": "JSONB",
    },
    # TIMESTAMP/DATE/BOOLEAN only hint BI tools; SQLite stores ISO text and 0/1.
    "sqlite": {
        "text": "TEXT",
        "float": "REAL",
        "int": "INTEGER",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "date": "DATE",
        "json": "TEXT",
    },
}


@dataclass(frozen=True)
class Column:
    """One column of an exported table.

    Parameters
    ----------
    name
        Column name (a valid identifier).
    kind
        Logical type; see ``_SQL_TYPES`` for the SQL type on each backend.
    nullable
        Whether NULL is allowed (missing values: ``None``, ``NaN``, ``NaT``, ``pd.NA``).
    allowed
        ``text`` only: the only values accepted.
    bounds
        ``float`` only: inclusive ``(low, high)`` range.
    """

    name: str
    kind: ColumnKind
    nullable: bool = False
    allowed: frozenset[str] | None = None
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        validate_identifier(self.name)
        if self.kind not in get_args(ColumnKind):
            raise ValueError(
                f"column {self.name!r}: unknown kind {self.kind!r}, expected one of "
                f"{get_args(ColumnKind)}"
            )
        if self.allowed is not None and self.kind != "text":
            raise ValueError(f"column {self.name!r}: 'allowed' applies to text columns only")
        if self.bounds is not None and self.kind != "float":
            raise ValueError(f"column {self.name!r}: 'bounds' applies to float columns only")


@dataclass(frozen=True)
class TableSpec:
    """An exported table partitioned by ``(feed, partition_date)``.

    Parameters
    ----------
    name
        Table name (a valid identifier).
    columns
        All columns in table order; must include ``feed`` (text) and
        ``partition_date`` (date), both NOT NULL.
    primary_key
        Primary-key columns, or ``()`` for none. When it does not start with
        ``(feed, partition_date)`` :func:`ensure_table` adds an index on them.
    order_by
        Row order of :func:`~pynomaly_core.warehouse.load.read_partition`.
    indexes
        More indexes, each a tuple of columns, named ``ix_<table>_<columns joined by _>``
        (for the queries a table serves besides reading a partition).
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        validate_identifier(self.name)
        by_name = self.column_map
        if len(by_name) != len(self.columns):
            raise ValueError(f"table {self.name!r}: duplicate column names")
        for name, kind in zip(PARTITION_COLUMNS, ("text", "date"), strict=True):
            column = by_name.get(name)
            if column is None or column.kind != kind or column.nullable:
                raise ValueError(f"table {self.name!r} needs a NOT NULL {kind} column {name!r}")
        for name in self.primary_key + self.order_by + tuple(c for index in self.indexes for c in index):
            if name not in by_name:
                raise ValueError(f"table {self.name!r} has no column {name!r}")
        for name in self.primary_key:
            if by_name[name].nullable:
                raise ValueError(f"table {self.name!r}: primary-key column {name!r} is nullable")
        for index in self.indexes:
            validate_identifier(self.index_name(index))

    @property
    def column_map(self) -> dict[str, Column]:
        """The columns by name."""
        return {c.name: c for c in self.columns}

    @property
    def frame_columns(self) -> tuple[Column, ...]:
        """The columns a frame passed to ``replace_partition`` (and the other loads) must carry."""
        return tuple(c for c in self.columns if c.name not in PARTITION_COLUMNS)

    def index_name(self, columns: tuple[str, ...]) -> str:
        """The name :func:`ensure_table` gives the index on ``columns``."""
        return f"ix_{self.name}_{'_'.join(columns)}"


ANOMALY_TABLE = TableSpec(
    name="anomaly_scores",
    columns=(
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("record_key", "text"),
        Column("event_time", "timestamp", nullable=True),
        Column("score", "float"),
        Column("normalized_score", "float", bounds=(0.0, 1.0)),
        Column("is_anomaly", "bool"),
        Column("severity", "text", nullable=True, allowed=frozenset(SEVERITIES)),
        Column("model_name", "text"),
        Column("model_version", "text"),
        Column("run_id", "text"),
        Column("top_features", "json", nullable=True),
        Column("scored_at", "timestamp"),
        Column("p_value", "float", nullable=True, bounds=(0.0, 1.0)),
        Column("explanation_method", "text", nullable=True),
        Column("feature_1", "text", nullable=True),
        Column("contribution_1", "float", nullable=True),
        Column("feature_2", "text", nullable=True),
        Column("contribution_2", "float", nullable=True),
        Column("feature_3", "text", nullable=True),
        Column("contribution_3", "float", nullable=True),
    ),
    primary_key=("feed", "partition_date", "record_key"),
    order_by=("record_key",),
)
"""One row per scored record; see ``docs/anomaly_table.md``."""

QUARANTINE_TABLE = TableSpec(
    name="quarantine",
    columns=(
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("row_number", "int"),
        Column("record_key", "text", nullable=True),
        Column("column_name", "text", nullable=True),
        Column("rule", "text"),
        Column("failure_value", "text", nullable=True),
        Column("row_json", "json"),
        Column("run_id", "text"),
        Column("quarantined_at", "timestamp"),
    ),
    order_by=("row_number", "rule", "column_name"),
)
"""One row per failed (source row, rule): a row failing two rules appears twice."""

FEEDBACK_VERDICTS = ("confirmed", "rejected")
FEEDBACK_TABLE = TableSpec(
    name="anomaly_feedback",
    columns=(
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("record_key", "text"),
        Column("verdict", "text", allowed=frozenset(FEEDBACK_VERDICTS)),
        Column("reviewer", "text", nullable=True),
        Column("note", "text", nullable=True),
        Column("reviewed_at", "timestamp"),
    ),
    primary_key=("feed", "partition_date", "record_key"),
    order_by=("record_key",),
)
"""Verdicts BI users record on exported anomalies (one per record; upsert to change it).

``confirmed`` = a real anomaly (label 1), ``rejected`` = a false alarm (label 0). The
lifecycle uses them as labels when choosing a champion; see ``docs/model_lifecycle.md``.
"""

NOTIFICATION_SEVERITIES = ("info", "warning", "critical")
NOTIFICATIONS_TABLE = TableSpec(
    name="notifications",
    columns=(
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("notification_id", "text"),
        Column("kind", "text"),
        Column("created_at", "timestamp"),
        Column("severity", "text", allowed=frozenset(NOTIFICATION_SEVERITIES)),
        Column("message", "text"),
        Column("payload", "json"),
        Column("channel", "text", allowed=frozenset({"webhook", "table"})),
        Column("delivered", "bool", nullable=True),
        Column("delivery_error", "text", nullable=True),
    ),
    primary_key=("notification_id",),
    order_by=("created_at", "notification_id"),
    indexes=(("feed", "kind", "created_at"),),  # the cooldown query of pynomaly_core.maintenance.notify
)
"""Notifications of the maintenance jobs; ``partition_date`` is the UTC day of ``created_at``.

``channel`` is ``webhook`` when a webhook URL was configured (``delivered`` true/false, NULL
while the POST is in flight) or ``table`` when the notification was only recorded here
(``delivered`` NULL). The webhook URL itself is never stored.
"""


def ensure_table(engine: sa.Engine, spec: TableSpec, schema: str | None = None) -> None:
    """Create the table (and on PostgreSQL the schema) if missing, with its partition index.

    Raises ``ValueError`` naming the table and column when an existing table lacks
    one of the spec's NOT NULL columns; nullable columns added by later releases are
    added in place. The spec's extra ``indexes`` are created last.
    """
    dialect = dialect_of(engine)
    table = qualified(dialect, spec.name, schema)
    types = _SQL_TYPES[dialect]
    definitions = [
        f"{quote(c.name)} {types[c.kind]}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns
    ]
    if spec.primary_key:
        definitions.append(f"PRIMARY KEY ({', '.join(map(quote, spec.primary_key))})")
    with engine.begin() as conn:
        if dialect == "postgresql":
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
            advisory_lock(conn, table, "ddl")
            if schema is not None:
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"))
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(definitions)})"))
        if spec.primary_key[:2] != PARTITION_COLUMNS:
            _create_index(conn, table, f"ix_{spec.name}_feed_partition_date", PARTITION_COLUMNS)
        existing = {c["name"] for c in sa.inspect(conn).get_columns(spec.name, schema=schema)}
        missing = [c for c in spec.columns if c.name not in existing]
        required = [c.name for c in missing if not c.nullable]
        if required:
            raise ValueError(f"existing table {table} lacks NOT NULL column(s) {required}; migrate or drop it")
        # columns added by later releases are nullable: add them in place
        for column in missing:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {quote(column.name)} {types[column.kind]}"))
        for columns in spec.indexes:
            _create_index(conn, table, spec.index_name(columns), columns)


def _create_index(conn: sa.Connection, table: str, name: str, columns: tuple[str, ...]) -> None:
    listed = ", ".join(map(quote, columns))
    conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {table} ({listed})"))
