"""Reading one daily partition of a feed from its source, exactly as it is.

CSV files are read as text (every column a string) so that a malformed value reaches
validation — where it is quarantined with its column and rule — instead of failing
the whole read or being silently coerced. Parquet and SQL keep their native types.
Every error names the file (or query source) at fault.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
from dataclasses import dataclass

import pandas as pd

from pynomaly_core.data.config import (
    DATA_ROOTS_ENV,
    CsvSource,
    DemoSource,
    FeedConfig,
    FeedConfigError,
    ParquetSource,
    SqlSource,
    check_confined,
    data_roots,
    path_inside,
)


class SourceReadError(RuntimeError):
    """A partition's source could not be read; the message names the file or setting."""


@dataclass
class RawPartition:
    frame: pd.DataFrame
    #: human-readable description of where the rows came from (file names, query)
    source: str
    files: list[str]


def partition_window(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of a daily UTC partition."""
    start = pd.Timestamp(day, tz="UTC")
    return start, start + pd.Timedelta(days=1)


def read_partition(feed: FeedConfig, day: dt.date) -> RawPartition:
    """All rows of ``feed`` for the UTC day ``day``."""
    src = feed.source
    if isinstance(src, DemoSource):
        return _read_demo(feed, src, day)
    if isinstance(src, SqlSource):
        return _read_sql(feed, src, day)
    return _read_files(feed, src, day)


def _read_files(feed: FeedConfig, src: CsvSource | ParquetSource, day: dt.date) -> RawPartition:
    try:
        check_confined(feed)
    except FeedConfigError as exc:
        raise SourceReadError(str(exc)) from None
    pattern = feed.resolve_path(src.path.replace("{date}", day.isoformat()))
    files = (
        sorted(glob.glob(pattern))
        if glob.has_magic(pattern)
        else ([pattern] if os.path.exists(pattern) else [])
    )
    roots = data_roots(feed)
    escaped = [f for f in files if not path_inside(f, roots)]
    if escaped:  # a symlink that points out of the data roots
        raise SourceReadError(
            f"{escaped[0]}: resolves outside the allowed directories of feed {feed.name!r} "
            f"(the feed file's directory and {DATA_ROOTS_ENV}); not read"
        )
    if not files:
        # No file for the day is an empty partition, not an error: validation's
        # min-rows check decides whether that is acceptable for the feed.
        return RawPartition(
            pd.DataFrame(columns=feed.expected_columns), f"{pattern} (no files)", []
        )
    frames = []
    for path in files:
        try:
            if isinstance(src, ParquetSource):
                frame = pd.read_parquet(path)
            else:
                frame = pd.read_csv(
                    path,
                    dtype=str,
                    keep_default_na=False,
                    na_values=[],
                    delimiter=src.delimiter,
                    encoding=src.encoding,
                )
        except pd.errors.ParserError as exc:
            ragged = (
                _ragged_lines(path, src)
                if isinstance(src, CsvSource) and not isinstance(src, ParquetSource)
                else []
            )
            detail = (
                f"{len(ragged)} line(s) with the wrong number of fields: {_line_list(ragged)}"
                if ragged
                else str(exc)
            )
            raise SourceReadError(
                f"{path}: cannot read {src.kind.upper()} file for feed "
                f"{feed.name!r}, partition {day}: {detail}"
            ) from exc
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SourceReadError(
                f"{path}: cannot read {src.kind.upper()} file for feed "
                f"{feed.name!r}, partition {day}: {exc}"
            ) from exc
        if frames and list(frame.columns) != list(frames[0][1].columns):
            if sorted(map(str, frame.columns)) != sorted(map(str, frames[0][1].columns)):
                raise SourceReadError(
                    f"{path}: columns {list(frame.columns)} differ from {frames[0][0]}'s "
                    f"{list(frames[0][1].columns)} in the same partition"
                )
            frame = frame[
                list(frames[0][1].columns)
            ]  # same columns in another order: align by name
        frames.append((path, frame))
    frame = (
        pd.concat([f for _, f in frames], ignore_index=True) if len(frames) > 1 else frames[0][1]
    )
    return RawPartition(frame, ", ".join(files), files)


def _ragged_lines(path: str, src: CsvSource) -> list[int]:
    """Line numbers (1-based, header = line 1) whose field count differs from the header's."""
    import csv

    bad = []
    with open(path, newline="", encoding=src.encoding) as fh:
        reader = csv.reader(fh, delimiter=src.delimiter)
        width = None
        for fields in reader:
            if width is None:
                width = len(fields)
            elif fields and len(fields) != width:
                bad.append(reader.line_num)
    return bad


def _line_list(lines: list[int], shown: int = 20) -> str:
    text = ", ".join(map(str, lines[:shown]))
    return text + (f" and {len(lines) - shown} more" if len(lines) > shown else "")


def _read_sql(feed: FeedConfig, src: SqlSource, day: dt.date) -> RawPartition:
    import sqlalchemy as sa

    url = os.environ.get(src.url_env)
    if not url:
        raise SourceReadError(
            f"feed {feed.name!r}: environment variable {src.url_env} (source.url_env) is not set; "
            "it must hold the SQLAlchemy URL of the source database"
        )
    start, end = partition_window(day)
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ValueError):
        # the value may be a secret: name the variable, never echo what it holds
        raise SourceReadError(
            f"feed {feed.name!r}: environment variable {src.url_env} (source.url_env) does not hold a "
            "SQLAlchemy URL (e.g. postgresql+psycopg2://user@host/db)"
        ) from None
    try:
        with engine.connect() as conn:
            _read_only(conn)
            frame = pd.read_sql(
                sa.text(src.query),
                conn,
                params={
                    "partition_start": start.to_pydatetime(),
                    "partition_end": end.to_pydatetime(),
                },
            )
            conn.rollback()  # nothing a source query did is ever committed
    except sa.exc.SQLAlchemyError as exc:
        raise SourceReadError(
            f"feed {feed.name!r}: source query failed for partition {day}: {exc}"
        ) from exc
    finally:
        engine.dispose()
    return RawPartition(frame, f"SQL query via ${src.url_env}", [])


def _read_only(conn) -> None:
    """Make the source transaction read-only where the database can enforce it."""
    import sqlalchemy as sa

    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))
    elif dialect == "sqlite":
        conn.execute(sa.text("PRAGMA query_only = ON"))


def _read_demo(feed: FeedConfig, src: DemoSource, day: dt.date) -> RawPartition:
    from pynomaly_core.data.demo import DemoSettings, generate_day

    settings = DemoSettings(
        seed=src.seed,
        machines=src.machines,
        interval_minutes=src.interval_minutes,
        anomaly_rate=src.anomaly_rate,
        drift_date=src.drift_date,
        drift_strength=src.drift_strength,
    )
    frame = generate_day(day, settings)
    return RawPartition(frame, f"demo generator (seed {src.seed})", [])
