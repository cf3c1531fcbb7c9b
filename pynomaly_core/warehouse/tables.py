"""The warehouse's tables: column kinds, table specs, and creating or migrating a table.

Every table is partitioned by ``(feed, partition_date)``. A :class:`TableSpec` is the one
description of a table that creation (:func:`ensure_table`), loading, reading and the BI views
all follow; the specs of the tables Pynomaly writes are defined here.

Tables are created with SQLAlchemy's DDL constructs (``CREATE TABLE/INDEX/SCHEMA ... IF NOT
EXISTS``, ``ALTER TABLE ... ADD CONSTRAINT``). The migrations SQLAlchemy has no construct for
(``ADD COLUMN``, ``ALTER COLUMN ... TYPE``, ``RENAME``) are the only SQL written here, with every
name quoted by the dialect's identifier preparer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateSchema, CreateTable, DropView

from pynomaly_core.severity import LEVELS
from pynomaly_core.warehouse.sql import (
    Dialect,
    advisory_lock,
    dialect_of,
    qualified,
    quote,
    sql_name,
    table_clause,
    validate_identifier,
)

__all__ = [
    "ANOMALY_TABLE",
    "ATTRIBUTE_ROLES",
    "ATTRIBUTE_TABLE",
    "BI_VIEWS",
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

BI_VIEWS = ("anomaly_daily_summary", "anomaly_top", "model_versions_in_use")
"""The views :func:`~pynomaly_core.warehouse.views.create_views` builds over the anomaly and
feedback tables; a migration that rewrites one of those tables drops them and builds them again."""

_SQL_TYPES: dict[Dialect, dict[ColumnKind, sa.types.TypeEngine[Any]]] = {
    "postgresql": {
        "text": sa.TEXT(),
        "float": sa.DOUBLE_PRECISION(),
        "int": sa.BIGINT(),
        "bool": sa.BOOLEAN(),
        "timestamp": sa.TIMESTAMP(timezone=True),
        "date": sa.DATE(),
        "json": JSONB(),
    },
    # TIMESTAMP/DATE/BOOLEAN only hint BI tools; SQLite stores ISO text and 0/1.
    "sqlite": {
        "text": sa.TEXT(),
        "float": sa.REAL(),
        "int": sa.INTEGER(),
        "bool": sa.BOOLEAN(),
        "timestamp": sa.TIMESTAMP(),
        "date": sa.DATE(),
        "json": sa.TEXT(),
    },
}
_INTEGER_TEXT = re.compile(r"-?\d{1,18}")
"""Text a column converted to ``int`` may hold: a decimal integer that fits 64 bits, nothing around it."""


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
    check
        Enforce ``allowed`` in the database too, with a CHECK constraint named
        ``ck_<table>_<column>``: for tables people write with plain SQL, where the
        loaders' validation does not run (reviewers' verdicts).
    fill_from
        A column added by a later release: a frame written before it existed (e.g. a day
        scored earlier) lacks it, and the loader fills it from this other column of the frame.
    """

    name: str
    kind: ColumnKind
    nullable: bool = False
    allowed: frozenset[str] | None = None
    bounds: tuple[float, float] | None = None
    check: bool = field(default=False, kw_only=True)
    fill_from: str | None = field(default=None, kw_only=True)

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
        if self.check and self.allowed is None:
            raise ValueError(
                f"column {self.name!r}: 'check' enforces 'allowed' values, and it has none"
            )


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
        for name in (
            self.primary_key + self.order_by + tuple(c for index in self.indexes for c in index)
        ):
            if name not in by_name:
                raise ValueError(f"table {self.name!r} has no column {name!r}")
        for name in self.primary_key:
            if by_name[name].nullable:
                raise ValueError(f"table {self.name!r}: primary-key column {name!r} is nullable")
        for index in self.indexes:
            validate_identifier(self.index_name(index))
        for column in self.columns:
            if column.check:
                validate_identifier(self.check_name(column.name))

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

    def check_name(self, column: str) -> str:
        """The name :func:`ensure_table` gives the CHECK constraint of ``column`` (``check=True``)."""
        return f"ck_{self.name}_{column}"


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
        Column("model_version", "int"),
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
        # added by a later release: nullable, so an older table gains it in place (ADD COLUMN); a
        # day scored before the alert budget existed had every flagged row as an alert
        Column("is_alert", "bool", nullable=True, fill_from="is_anomaly"),
    ),
    primary_key=("feed", "partition_date", "record_key"),
    order_by=("record_key",),
)
"""One row per scored record; see ``docs/anomaly_table.md``."""

ATTRIBUTE_ROLES = ("entity", "passthrough", "feature")
ATTRIBUTE_TABLE = TableSpec(
    name="anomaly_attributes",
    columns=(
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("record_key", "text"),
        Column("event_time", "timestamp", nullable=True),
        Column("attribute", "text"),
        Column("role", "text", allowed=frozenset(ATTRIBUTE_ROLES)),
        Column("text_value", "text", nullable=True),
        Column("number_value", "float", nullable=True),
    ),
    primary_key=("feed", "partition_date", "record_key", "attribute"),
    order_by=("record_key", "attribute"),
    # "which machines had ...": rows of one attribute (machine_id) of a feed, by value
    indexes=(("feed", "attribute", "text_value"),),
)
"""The scored records' context, one row per (record, attribute): long, so any feed's columns fit.

``entity`` (the feed's ``entity`` column) and ``passthrough`` columns for every scored row; the
scored ``feature`` values for the flagged rows (``is_anomaly``). Text in ``text_value``; numbers in
``number_value`` (and, for entity and passthrough columns, as text too, so a join on the value
works whatever its type). Columns listed under the feed's ``pii`` (or features with ``pii: true``)
are not exported. Joined to ``anomaly_scores`` on ``(feed, partition_date, record_key)``; see
``docs/anomaly_table.md``.
"""

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
        Column("verdict", "text", allowed=frozenset(FEEDBACK_VERDICTS), check=True),
        Column("reviewer", "text", nullable=True),
        Column("note", "text", nullable=True),
        Column("reviewed_at", "timestamp"),
    ),
    primary_key=("feed", "partition_date", "record_key"),
    order_by=("record_key",),
)
"""Verdicts BI users record on exported anomalies (one per record; upsert to change it).

``confirmed`` = a real anomaly (label 1), ``rejected`` = a false alarm (label 0). The
lifecycle uses them as labels when choosing a champion; see ``docs/model_lifecycle.md``. The
database refuses any other verdict (a CHECK constraint), since BI users may write here with plain
SQL; :func:`~pynomaly_core.warehouse.feedback.upsert_feedback` also checks the record keys. There is
no foreign key to ``anomaly_scores``: re-scoring a day deletes and reloads its rows, which a
foreign key would refuse (or, cascading, would delete the reviewers' verdicts).
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
        Column(
            "channel", "text", allowed=frozenset({"webhook", "slack", "email", "multiple", "table"})
        ),
        Column("delivered", "bool", nullable=True),
        Column("delivery_error", "text", nullable=True),
    ),
    primary_key=("notification_id",),
    order_by=("created_at", "notification_id"),
    indexes=(
        ("feed", "kind", "created_at"),
    ),  # the cooldown query of pynomaly_core.maintenance.notify
)
"""Notifications of the maintenance jobs; ``partition_date`` is the UTC day of ``created_at``.

``channel`` is ``webhook`` (generic JSON), ``slack`` or ``email`` when one channel was configured,
``multiple`` for several (``delivered`` true when all accepted it, NULL while delivery is in
flight; ``delivery_error`` names each that failed) or ``table`` when the notification was only
recorded here (``delivered`` NULL). Webhook URLs and SMTP passwords are never stored.
"""


VIEW_SOURCES = (ANOMALY_TABLE.name, FEEDBACK_TABLE.name)
"""The tables the BI views read."""
_SHOWN_ROWS = 10


@dataclass(frozen=True)
class _Migration:
    """What an existing table lacks: columns to convert from text to ``int``, CHECK constraints to add."""

    to_int: tuple[Column, ...] = ()
    checks: tuple[Column, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.to_int or self.checks)


def ensure_table(engine: sa.Engine, spec: TableSpec, schema: str | None = None) -> None:
    """Create the table (and on PostgreSQL the schema) if missing, migrate an older one, create its indexes.

    Migrations, each done once (a second call finds nothing to do):

    * nullable columns added by later releases are added in place (``ADD COLUMN``);
    * a column the spec now declares ``int`` that an older release created as text
      (``anomaly_scores.model_version``) is converted;
    * a CHECK constraint a column gained (``check=True``: ``anomaly_feedback.verdict``) is added.

    Before converting or constraining, the existing rows are checked: when some would not fit,
    ``ValueError`` names the table, the column and those rows, and nothing is changed. A
    conversion or (on SQLite) a rebuild of a table the BI views read drops the views and builds
    them again. PostgreSQL migrates in one transaction under an advisory lock, with ``ALTER
    TABLE`` (grants on the table survive); SQLite can neither change a column's type nor add a
    constraint, so its table is rebuilt (a new table, the rows copied, the old one dropped, the new
    one renamed) in one ``BEGIN IMMEDIATE`` transaction. Also ``ValueError`` when an existing
    table lacks one of the spec's NOT NULL columns.
    """
    dialect = dialect_of(engine)
    table = qualified(engine, spec.name, schema)
    with engine.begin() as conn:
        if dialect == "postgresql":
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
            advisory_lock(conn, table, "ddl")
            if schema is not None:
                conn.execute(CreateSchema(sql_name(schema), if_not_exists=True))
        conn.execute(CreateTable(_sa_table(conn, spec, schema), if_not_exists=True))
        _add_missing_columns(conn, spec, schema)
        migration = _pending(conn, spec, schema)
        if migration and dialect == "postgresql":
            _migrate_postgres(conn, spec, schema, migration)
    if migration and dialect == "sqlite":
        _rebuild_sqlite(engine, spec)
    with engine.begin() as conn:
        for index in _sa_table(conn, spec, schema).indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))
    if migration and _drops_views(dialect, spec, migration):
        from pynomaly_core.warehouse.views import create_views  # views.py builds on this module

        create_views(engine, schema)


def _sa_table(
    bind: sa.Engine | sa.Connection, spec: TableSpec, schema: str | None, name: str | None = None
) -> sa.Table:
    """``spec`` as a typed SQLAlchemy table (named ``name``, default ``spec.name``) for the DDL constructs."""
    table_clause(bind, spec.name, schema=schema)  # refuses a schema on SQLite, naming the table
    types = _SQL_TYPES[dialect_of(bind)]
    name = sql_name(name or spec.name)
    table = sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(sql_name(c.name), types[c.kind], nullable=c.nullable) for c in spec.columns),
        *([sa.PrimaryKeyConstraint(*map(sql_name, spec.primary_key))] if spec.primary_key else []),
        *(
            sa.CheckConstraint(_allowed(c), name=sql_name(spec.check_name(c.name)))
            for c in spec.columns
            if c.check
        ),
        schema=None if schema is None else sql_name(schema),
    )
    indexes = list(spec.indexes)
    if spec.primary_key[:2] != PARTITION_COLUMNS:
        indexes.insert(0, PARTITION_COLUMNS)
    for columns in indexes:
        sa.Index(sql_name(spec.index_name(columns)), *(table.c[c] for c in columns))
    return table


def _allowed(column: Column) -> sa.ColumnElement[bool]:
    """``column IN (<allowed values>)``: the CHECK of a ``check=True`` column (values rendered as literals)."""
    return sa.column(sql_name(column.name)).in_(sorted(column.allowed or ()))


def _add_missing_columns(conn: sa.Connection, spec: TableSpec, schema: str | None) -> None:
    """Add the spec's nullable columns an existing table lacks; ``ValueError`` for missing NOT NULL ones."""
    table = qualified(conn, spec.name, schema)
    existing = {c["name"] for c in sa.inspect(conn).get_columns(spec.name, schema=schema)}
    missing = [c for c in spec.columns if c.name not in existing]
    required = [c.name for c in missing if not c.nullable]
    if required:
        raise ValueError(
            f"existing table {table} lacks NOT NULL column(s) {required}; migrate or drop it"
        )
    types = _SQL_TYPES[dialect_of(conn)]
    for column in missing:
        sql_type = types[column.kind].compile(dialect=conn.dialect)
        # nosec B608: DDL: SQLAlchemy has no ADD COLUMN construct; names are validated and preparer-quoted
        conn.execute(
            sa.text(f"ALTER TABLE {table} ADD COLUMN {quote(conn, column.name)} {sql_type}")
        )


def _pending(conn: sa.Connection, spec: TableSpec, schema: str | None) -> _Migration:
    """The migrations an existing table (with all the spec's columns) still needs."""
    inspector = sa.inspect(conn)
    types = {c["name"]: c["type"] for c in inspector.get_columns(spec.name, schema=schema)}
    checks = {c["name"] for c in inspector.get_check_constraints(spec.name, schema=schema)}
    return _Migration(
        to_int=tuple(
            c for c in spec.columns if c.kind == "int" and isinstance(types[c.name], sa.String)
        ),
        checks=tuple(c for c in spec.columns if c.check and spec.check_name(c.name) not in checks),
    )


def _refuse_misfits(
    conn: sa.Connection, spec: TableSpec, schema: str | None, migration: _Migration
) -> None:
    """``ValueError`` naming the rows that a conversion or a new constraint would not accept."""
    table = qualified(conn, spec.name, schema)
    key = spec.primary_key or PARTITION_COLUMNS
    source = table_clause(conn, spec.name, tuple(c.name for c in spec.columns), schema)
    for column in migration.to_int:
        values = conn.execute(
            sa.select(source.c[column.name]).distinct().where(source.c[column.name].is_not(None))
        ).scalars()
        bad = sorted({str(v) for v in values if _INTEGER_TEXT.fullmatch(str(v)) is None})
        if bad:
            raise ValueError(
                f"existing table {table}: column {column.name!r} is now an integer, but {len(bad)} stored "
                f"value(s) are not: {bad[:_SHOWN_ROWS]}; correct them (UPDATE) or delete those rows, then "
                "run again. Nothing was changed"
            )
    for column in migration.checks:
        misfit = sa.and_(source.c[column.name].is_not(None), sa.not_(_allowed(column)))
        query = (
            sa.select(*(source.c[c] for c in (*key, column.name)))
            .where(misfit)
            .limit(_SHOWN_ROWS + 1)
        )
        rows = conn.execute(query).all()
        if rows:
            shown = "; ".join(
                ", ".join(
                    f"{name}={value!r}"
                    for name, value in zip((*key, column.name), row, strict=True)
                )
                for row in rows[:_SHOWN_ROWS]
            )
            more = " (and more)" if len(rows) > _SHOWN_ROWS else ""
            raise ValueError(
                f"existing table {table}: column {column.name!r} now accepts only {sorted(column.allowed or ())} "
                f"(constraint {spec.check_name(column.name)}), but these rows hold another value: {shown}{more}; "
                "correct them (UPDATE) or delete them, then run again. Nothing was changed"
            )


def _drops_views(dialect: Dialect, spec: TableSpec, migration: _Migration) -> bool:
    """Whether migrating ``spec`` must drop the BI views: PostgreSQL cannot change the type of a column a
    view reads, and SQLite cannot rename a table into place while a view names a missing one."""
    return spec.name in VIEW_SOURCES and bool(migration.to_int or dialect == "sqlite")


def _drop_views(conn: sa.Connection, schema: str | None) -> None:
    for view in BI_VIEWS:
        view_clause = table_clause(conn, view, schema=schema)
        conn.execute(DropView(view_clause, if_exists=True))  # type: ignore[arg-type]  # stub: Table; a clause works


def _migrate_postgres(
    conn: sa.Connection, spec: TableSpec, schema: str | None, migration: _Migration
) -> None:
    """Convert and constrain in place with ``ALTER TABLE``, inside the caller's transaction."""
    _refuse_misfits(conn, spec, schema, migration)
    table = qualified(conn, spec.name, schema)
    if _drops_views("postgresql", spec, migration):
        _drop_views(conn, schema)
    bigint = _SQL_TYPES["postgresql"]["int"].compile(dialect=conn.dialect)
    for column in migration.to_int:
        name = quote(conn, column.name)
        try:
            with conn.begin_nested():
                # nosec B608: DDL: SQLAlchemy has no ALTER COLUMN construct; names are validated and preparer-quoted
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {bigint} USING CAST({name} AS {bigint})"
                    )
                )
        except sa.exc.DBAPIError as exc:
            raise ValueError(
                f"cannot convert column {column.name!r} of table {table} to an integer: {exc.orig}. A view of "
                "your own that reads the column blocks it: drop that view, run again, then re-create it"
            ) from exc
    checked = {c.name for c in migration.checks}
    for constraint in _sa_table(conn, spec, schema).constraints:
        if isinstance(constraint, sa.CheckConstraint) and constraint.name in {
            spec.check_name(c) for c in checked
        }:
            conn.execute(AddConstraint(constraint))


def _rebuild_sqlite(engine: sa.Engine, spec: TableSpec) -> None:
    """Rebuild a SQLite table to the spec (SQLite's documented way to change a column's type or constraints).

    One ``BEGIN IMMEDIATE`` transaction, which takes the write lock first, so a concurrent
    rebuild waits and then finds nothing left to do. Columns the spec does not know are kept.
    """
    table = qualified(engine, spec.name)
    staging = validate_identifier(f"{spec.name}__rebuild")
    with engine.begin() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite would only begin at the first INSERT
        migration = _pending(conn, spec, None)
        if not migration:
            return
        _refuse_misfits(conn, spec, None, migration)
        _drop_views(conn, None)
        known = {c.name for c in spec.columns}
        extra = [c for c in sa.inspect(conn).get_columns(spec.name) if c["name"] not in known]
        target = _sa_table(conn, spec, None, name=staging)
        for column in extra:
            target.append_column(sa.Column(sql_name(column["name"]), column["type"], nullable=True))
        for index in list(
            target.indexes
        ):  # the indexes are created under the final name afterwards
            target.indexes.discard(index)
        conn.execute(CreateTable(target))
        source = table_clause(conn, spec.name, tuple(c.name for c in target.columns))
        converted = {c.name for c in migration.to_int}
        selected = [
            sa.cast(source.c[c.name], sa.INTEGER) if c.name in converted else source.c[c.name]
            for c in target.columns
        ]
        conn.execute(
            sa.insert(target).from_select([c.name for c in target.columns], sa.select(*selected))
        )
        conn.execute(sa.schema.DropTable(sa.Table(sql_name(spec.name), sa.MetaData())))
        try:
            # nosec B608: DDL: SQLAlchemy has no RENAME construct; names are validated and preparer-quoted
            conn.execute(
                sa.text(f"ALTER TABLE {quote(conn, staging)} RENAME TO {quote(conn, spec.name)}")
            )
        except sa.exc.DBAPIError as exc:
            raise ValueError(
                f"cannot rebuild table {table}: {exc.orig}. A view of your own that reads it blocks the "
                "rebuild: drop that view, run again, then re-create it"
            ) from exc
