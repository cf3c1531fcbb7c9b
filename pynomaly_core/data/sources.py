"""Reading one daily partition of a feed from its source, exactly as it is.

CSV files are read as text (every column a string) so that a malformed value reaches
validation — where it is quarantined with its column and rule — instead of failing
the whole read or being silently coerced. Parquet and SQL keep their native types.
Every error names the file (or query source) at fault.

File sources are local paths or fsspec URLs (``s3://``, ``gs://``, ``abfs://``) whose clients
take their credentials from the environment; a missing bucket or refused credentials is an
error naming the URL, never an empty day.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pynomaly_core.data.config import (
    DATA_ROOTS_ENV,
    REMOTE_PROTOCOLS,
    CsvSource,
    DemoSource,
    FeedConfig,
    FeedConfigError,
    ParquetSource,
    SqlSource,
    check_confined,
    data_roots,
    is_url,
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


def partition_window(day: dt.date, hour: int | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of a daily UTC partition, or of its hour ``hour`` (an hourly partition)."""
    start = pd.Timestamp(day, tz="UTC")
    if hour is None:
        return start, start + pd.Timedelta(days=1)
    start += pd.Timedelta(hours=hour)
    return start, start + pd.Timedelta(hours=1)


def read_partition(feed: FeedConfig, day: dt.date) -> RawPartition:
    """All rows of ``feed`` for the UTC day ``day``."""
    src = feed.source
    if isinstance(src, DemoSource):
        return _read_demo(feed, src, day)
    if isinstance(src, SqlSource):
        return _read_sql(feed, src, day)
    return _read_files(feed, src, day)


def _read_files(feed: FeedConfig, src: CsvSource | ParquetSource, day: dt.date) -> RawPartition:
    pattern = feed.resolve_path(src.path.replace("{date}", day.isoformat()))
    files = [f.path for f in partition_files(feed, day)]
    if not files:
        # No file for the day is an empty partition, not an error: validation's
        # min-rows check decides whether that is acceptable for the feed.
        return RawPartition(
            pd.DataFrame(columns=feed.expected_columns), f"{pattern} (no files)", []
        )
    fs = _filesystem(feed, pattern) if is_url(pattern) else None
    frames: list[pd.DataFrame] = []
    for path in files:
        frame = _read_file(feed, src, day, path, fs)
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


@dataclass(frozen=True)
class SourceFile:
    """One file of a partition and its version (ETag, generation or mtime+size): a new version is
    a changed file, which the arrival sensor ingests again."""

    path: str
    version: str


def partition_files(feed: FeedConfig, day: dt.date) -> list[SourceFile]:
    """The files of ``feed``'s partition ``day`` with their versions, sorted by path.

    Local paths must stay inside the data roots and URLs under ``$PYNOMALY_REMOTE_SOURCES``
    (:func:`~pynomaly_core.data.config.check_confined`). A missing bucket, refused credentials or
    an unreachable store is a :class:`SourceReadError`, never an empty day.
    """
    src = feed.source
    if not isinstance(src, (CsvSource, ParquetSource)):
        return []
    try:
        check_confined(feed)
    except FeedConfigError as exc:
        raise SourceReadError(str(exc)) from None
    pattern = feed.resolve_path(src.path.replace("{date}", day.isoformat()))
    if is_url(pattern):
        return _remote_files(feed, pattern)
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
    versions = []
    for path in files:
        stat = os.stat(path)
        versions.append(SourceFile(path, f"{stat.st_mtime_ns}-{stat.st_size}"))
    return versions


#: where each protocol's client looks for credentials (quoted in access errors)
CREDENTIALS_HINT = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, an instance role), "
    "AWS_ENDPOINT_URL_S3 for S3-compatible stores",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (or the metadata server)",
    "abfs": "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_KEY, AZURE_STORAGE_CONNECTION_STRING or "
    "a service principal (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET)",
}


def _hint(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    family = {"gcs": "gs", "abfss": "abfs", "az": "abfs"}.get(scheme, scheme)
    return CREDENTIALS_HINT.get(family, "the environment")


#: fsspec file systems by (process, protocol, credential environment): building an S3 client
#: takes about a second, so a process reuses it while its credentials stay the same
_FILESYSTEMS: dict[tuple[int, str, str], Any] = {}
_CREDENTIAL_ENV = ("AWS_", "GOOGLE_", "GCSFS_", "AZURE_", "FSSPEC_")


def _filesystem(feed: FeedConfig, url: str) -> Any:
    """The fsspec file system of ``url`` with credentials from the environment, its listing
    cache cleared (the arrival sensor must see new files)."""
    scheme = url.split("://", 1)[0].lower()
    credentials = sorted((k, v) for k, v in os.environ.items() if k.startswith(_CREDENTIAL_ENV))
    key = (os.getpid(), scheme, hashlib.sha256(repr(credentials).encode()).hexdigest())
    fs = _FILESYSTEMS.get(key)
    if fs is None:
        fs = _FILESYSTEMS[key] = _new_filesystem(feed, url, scheme)
    fs.invalidate_cache()
    return fs


def _new_filesystem(feed: FeedConfig, url: str, scheme: str) -> Any:
    import fsspec

    try:
        fs, _ = fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ImportError as exc:
        package = REMOTE_PROTOCOLS.get(scheme, scheme)
        raise SourceReadError(
            f"feed {feed.name!r}: reading {scheme}:// needs the package {package}, which is not "
            f"installed: pip install 'pynomaly[remote]' ({exc})"
        ) from None
    except (ValueError, TypeError) as exc:
        raise SourceReadError(f"feed {feed.name!r}: cannot open {url}: {exc}") from None
    return fs


def _remote_files(feed: FeedConfig, pattern: str) -> list[SourceFile]:
    fs = _filesystem(feed, pattern)
    bucket = fs._strip_protocol(pattern).split("/", 1)[0]
    try:
        if glob.has_magic(pattern):
            infos = fs.glob(pattern, detail=True)
        else:
            infos = {pattern: fs.info(pattern)} if fs.exists(pattern) else {}
        files = {
            fs.unstrip_protocol(p): i for p, i in infos.items() if i.get("type") != "directory"
        }
        if not files:
            # glob and exists answer "nothing" for a missing bucket too: listing the bucket tells
            # an empty day from a store that is not there
            fs.ls(bucket, detail=False)
    except FileNotFoundError:
        raise SourceReadError(
            f"{pattern}: bucket or container {bucket!r} does not exist (feed {feed.name!r})"
        ) from None
    except PermissionError as exc:
        raise SourceReadError(
            f"{pattern}: access denied for feed {feed.name!r} ({exc}); check the credentials in "
            f"the environment: {_hint(pattern)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - every client has its own errors (botocore, aiohttp, azure)
        raise SourceReadError(
            f"{pattern}: cannot list the files of feed {feed.name!r}: {type(exc).__name__}: {exc} "
            f"(credentials come from the environment: {_hint(pattern)})"
        ) from None
    return [SourceFile(path, _version(info)) for path, info in sorted(files.items())]


def _version(info: dict[str, Any]) -> str:
    """A file's version from its listing: ETag (S3, Azure), generation/md5 (GCS), else mtime+size."""
    for key in ("ETag", "etag", "generation", "md5Hash", "version_id", "VersionId"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    modified = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
    return f"{modified}-{info.get('size')}"


def _read_file(
    feed: FeedConfig, src: CsvSource | ParquetSource, day: dt.date, path: str, fs: Any
) -> pd.DataFrame:
    """One file of the partition (local, or through ``fs`` for a URL); errors name the file."""

    def opener(mode: str = "rb", **kwargs: Any) -> Any:
        return fs.open(path, mode, **kwargs) if fs is not None else open(path, mode, **kwargs)

    try:
        with opener() as fh:
            if isinstance(src, ParquetSource):
                return pd.read_parquet(fh)
            return pd.read_csv(
                fh,
                dtype=str,
                keep_default_na=False,
                na_values=[],
                delimiter=src.delimiter,
                encoding=src.encoding,
            )
    except pd.errors.ParserError as exc:
        ragged = [] if isinstance(src, ParquetSource) else _ragged_lines(opener, src)
        detail = (
            f"{len(ragged)} line(s) with the wrong number of fields: {_line_list(ragged)}"
            if ragged
            else str(exc)
        )
        raise SourceReadError(
            f"{path}: cannot read {src.kind.upper()} file for feed "
            f"{feed.name!r}, partition {day}: {detail}"
        ) from exc
    except PermissionError as exc:
        hint = f"; check the credentials in the environment: {_hint(path)}" if is_url(path) else ""
        raise SourceReadError(
            f"{path}: access denied for feed {feed.name!r}, partition {day}: {exc}{hint}"
        ) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SourceReadError(
            f"{path}: cannot read {src.kind.upper()} file for feed "
            f"{feed.name!r}, partition {day}: {exc}"
        ) from exc


def _ragged_lines(opener: Callable[..., Any], src: CsvSource) -> list[int]:
    """Line numbers (1-based, header = line 1) whose field count differs from the header's."""
    import csv

    bad = []
    with opener("rt", newline="", encoding=src.encoding) as fh:
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


def _read_only(conn: Any) -> None:
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


def hour_rows(feed: FeedConfig, part: RawPartition, day: dt.date, hour: int) -> RawPartition:
    """The rows of day ``day``'s partition whose event time falls in UTC hour ``hour`` (hourly feeds).

    An hourly partition reads its day (the ``{date}`` files, the day's query window) and keeps
    its hour, so sources stay organised per day. Rows whose event time cannot be parsed go to
    the day's first hour, where validation quarantines them once: every source row lands in
    exactly one hourly partition.
    """
    from pynomaly_core.data.timestamps import to_utc

    frame = part.frame
    if frame.empty or feed.event_time not in frame.columns:
        return part if hour == 0 else RawPartition(frame.iloc[0:0], part.source, part.files)
    times = to_utc(frame[feed.event_time], zone=feed.event_time_zone).times
    start, end = partition_window(day, hour)
    keep = ((times >= start) & (times < end)).fillna(False).to_numpy(dtype=bool)
    if hour == 0:
        keep |= times.isna().to_numpy()
    rows = frame.loc[keep].reset_index(drop=True)
    return RawPartition(rows, f"{part.source} (rows of hour {start:%H}:00 UTC)", part.files)
