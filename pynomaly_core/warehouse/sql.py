"""Connecting to the warehouse and the SQL pieces every warehouse module shares.

One place decides how a URL becomes an engine, which dialects are supported, how a name is
quoted and qualified, how a day or a moment is bound on each backend and how concurrent
writers are serialized on PostgreSQL, so the table, load, view and feedback modules (and the
maintenance jobs through them) never spell a dialect difference twice.

Names: every table, schema and column name passes :func:`validate_identifier`, then reaches SQL
only through SQLAlchemy: statements are Core constructs on :func:`table_clause` (SQLAlchemy
quotes what needs quoting: upper case, reserved words), and the few statements SQLAlchemy has no
construct for (COPY, ``ALTER TABLE``, column DDL) quote through the dialect's identifier
preparer (:func:`quote`, :func:`qualified`). A mixed-case schema such as ``Anomalies`` is thus
always written ``"Anomalies"``, never folded to ``anomalies``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from typing import Any, Literal, cast

import sqlalchemy as sa

from pynomaly_core.paths import pynomaly_home

__all__ = [
    "Dialect",
    "advisory_lock",
    "dialect_of",
    "make_engine",
    "partition_day",
    "partition_params",
    "qualified",
    "quote",
    "sql_day",
    "sql_name",
    "sql_time",
    "table_clause",
    "validate_feed",
    "validate_identifier",
    "warehouse_url_default",
]

Dialect = Literal["postgresql", "sqlite"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SQLITE_BUSY_TIMEOUT_S = 30.0
SQLITE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How SQLite stores a timestamp: ISO 8601 text in UTC with microseconds (sorts as text)."""


def validate_identifier(name: str) -> str:
    """Return ``name`` if it is a safe SQL identifier, else raise ``ValueError`` naming it.

    Accepted: ``[A-Za-z_][A-Za-z0-9_]{0,62}`` (at most 63 characters, PostgreSQL's limit).
    """
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise ValueError(
            f"invalid SQL identifier {name!r}: use 1-63 characters from [A-Za-z0-9_], "
            "not starting with a digit"
        )
    return name


def validate_feed(feed: str) -> str:
    """Return ``feed`` if it can name a partition (non-empty text without NUL), else raise ``ValueError``."""
    if not isinstance(feed, str) or not feed or "\x00" in feed:
        raise ValueError(f"feed must be a non-empty string without NUL characters, got {feed!r}")
    return feed


def warehouse_url_default() -> str:
    """The warehouse URL: ``$PYNOMALY_WAREHOUSE_URL``, else ``$PYNOMALY_HOME/warehouse.db``.

    For the SQLite default the directory is created.
    """
    url = os.environ.get("PYNOMALY_WAREHOUSE_URL")
    if url:
        return url
    path = pynomaly_home() / "warehouse.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> sa.Engine:
    """Create an engine for a ``postgresql://`` or ``sqlite://`` warehouse URL.

    ``postgresql://`` and ``postgres://`` use psycopg 3 (``postgresql+psycopg://``),
    which the COPY load needs; another PostgreSQL driver is refused. SQLite
    connections use the WAL journal and wait up to 30 s for a lock.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"invalid warehouse URL (PYNOMALY_WAREHOUSE_URL): {exc}") from exc
    shown = parsed.render_as_string(hide_password=True)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ValueError(
                f"warehouse URL {shown} uses driver {driver!r}; exports load PostgreSQL with "
                "COPY through psycopg 3: use postgresql:// or postgresql+psycopg://"
            )
        return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    if backend == "sqlite" and driver in ("", "pysqlite"):
        engine = sa.create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    raise ValueError(
        f"unsupported warehouse URL {shown}: PYNOMALY_WAREHOUSE_URL must be a "
        "postgresql:// or sqlite:// URL"
    )


def dialect_of(bind: sa.Engine | sa.Connection) -> Dialect:
    """The warehouse dialect of an engine or connection; ``ValueError`` for any other database."""
    name = bind.dialect.name
    if name not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported warehouse dialect {name!r}: use PostgreSQL or SQLite")
    return cast(Dialect, name)


def sql_name(name: str) -> str:
    """``name`` once it passes :func:`validate_identifier`; SQLAlchemy quotes it where needed.

    SQLAlchemy treats a name with upper-case letters as case-sensitive and quotes it (as it quotes
    reserved words); an all-lower-case name means the same quoted or not.
    """
    return validate_identifier(name)


def table_clause(
    bind: sa.Engine | sa.Connection,
    name: str,
    columns: tuple[str, ...] = (),
    schema: str | None = None,
) -> sa.TableClause:
    """A Core table ``name`` (in ``schema``, PostgreSQL only) with untyped ``columns``, for Core statements.

    Columns are untyped on purpose: values are bound as :func:`sql_day` and :func:`sql_time` made
    them, with no SQLAlchemy type conversion, so SQLite's ISO text stays byte-for-byte what the
    loader wrote.
    """
    table = sa.table(
        sql_name(name),
        *(sa.column(sql_name(c)) for c in columns),
        schema=None if schema is None else sql_name(schema),
    )
    if schema is not None and dialect_of(bind) == "sqlite":
        raise ValueError(f"schema {schema!r} given for table {name!r}: schemas need PostgreSQL")
    return table


def quote(bind: sa.Engine | sa.Connection, name: str) -> str:
    """``name`` as the dialect's identifier preparer writes it, for the DDL and COPY SQLAlchemy cannot build."""
    return bind.dialect.identifier_preparer.quote(sql_name(name))


def qualified(bind: sa.Engine | sa.Connection, name: str, schema: str | None = None) -> str:
    """Table ``name`` qualified by ``schema`` (PostgreSQL only), quoted by the dialect's identifier preparer.

    What raw SQL (COPY, ``ALTER TABLE``) names the table by, and what a person can paste into a
    query: ``"Anomalies".anomaly_scores`` for schema ``Anomalies``.
    """
    return bind.dialect.identifier_preparer.format_table(table_clause(bind, name, schema=schema))


def _lock_key(*parts: str) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock``."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_lock(conn: sa.Connection, *parts: str) -> None:
    """Take PostgreSQL's transaction-level advisory lock named by ``parts`` (released at commit/rollback).

    PostgreSQL only: SQLite serializes writers with its own lock, taken by the first write.
    """
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(CAST(:key AS BIGINT))"), {"key": _lock_key(*parts)}
    )


def partition_day(partition_date: str) -> dt.date:
    """The day of an ISO ``'YYYY-MM-DD'`` partition key; ``ValueError`` naming it otherwise."""
    if isinstance(partition_date, str) and _ISO_DAY.fullmatch(partition_date):
        try:
            return dt.date.fromisoformat(partition_date)
        except ValueError:
            pass
    raise ValueError(f"partition_date must be an ISO date 'YYYY-MM-DD', got {partition_date!r}")


def sql_day(dialect: Dialect, day: dt.date) -> dt.date | str:
    """``day`` as bound on ``dialect``: a DATE on PostgreSQL, ``YYYY-MM-DD`` text on SQLite."""
    return day if dialect == "postgresql" else day.isoformat()


def sql_time(dialect: Dialect, moment: dt.datetime) -> dt.datetime | str:
    """A timezone-aware ``moment`` as bound on ``dialect``: TIMESTAMPTZ, or SQLite's UTC ISO text."""
    if moment.tzinfo is None:
        raise ValueError(f"a warehouse timestamp must be timezone-aware, got naive {moment}")
    return (
        moment
        if dialect == "postgresql"
        else moment.astimezone(dt.UTC).strftime(SQLITE_TIME_FORMAT)
    )


def partition_params(dialect: Dialect, feed: str, day: dt.date) -> dict[str, Any]:
    """Bound parameters ``:feed`` and ``:day`` of one partition."""
    return {"feed": validate_feed(feed), "day": sql_day(dialect, day)}
