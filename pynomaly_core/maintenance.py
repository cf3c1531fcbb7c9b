"""Weekly maintenance of a feed: model health, retention, notifications and the weekly report.

Plain functions the Dagster assets ``model_health``, ``retention_cleanup`` and
``maintenance_report`` call; this module never imports dagster (nor mlflow: the tracker
passed in does that).

Model health
    :func:`check_model_versions` reloads every active registered version of a feed under the
    installed dependencies (verifying its signed manifest and the digest the registry
    recorded), re-scores the fixed sample its candidate run scored and compares the scores;
    versions without an alias are then archived (:meth:`Tracker.archive_version`, a tag).
Retention
    :func:`retention_cleanup` deletes a feed's warehouse rows older than each table's
    retention and old files (reports, frames, model directories), never a model directory
    an active registered version points at.
Notifications
    :func:`notify` records a notification in the warehouse table ``notifications`` and posts
    it to a webhook, at most once per feed and kind within a cooldown.
Report
    :func:`render_report` writes the week's HTML and JSON; :func:`crossed_thresholds` says
    which configured thresholds the week crossed. The sections it reads (all optional)::

        quality       {"success_percent": float | [float, ...]}      min_quality_success_percent
        drift         {"drift_share": float | [float, ...]}           max_drift_share
        retrains      {"count": int}                                  max_retrains
        performance   {"average_precision": float | [float, ...]}    min_average_precision
        model_health  {"unreproducible": int}  (see health_section)  max_unreproducible_versions (0)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import http.client
import json
import math
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pynomaly_core.export import (
    Column,
    TableSpec,
    _advisory_lock,
    _dialect,
    _qualified,
    _quote,
    ensure_table,
    validate_identifier,
)
from pynomaly_core.paths import pynomaly_home
from pynomaly_core.storage import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.storage import FrameStore
    from pynomaly_core.tracking import ModelVersionInfo, Tracker

__all__ = [
    "EVALUATION_STAGE",
    "NOTIFICATIONS_TABLE",
    "WEBHOOK_URL_ENV",
    "CleanupResult",
    "NotifyResult",
    "VersionHealth",
    "candidate_batch",
    "check_model_versions",
    "cleanup_section",
    "crossed_thresholds",
    "health_section",
    "notify",
    "recorded_scores_from_frame_store",
    "render_report",
    "retention_cleanup",
]

EVALUATION_STAGE = ("detector_candidates", "evaluation")
"""Frame-store key (after the feed) of the candidates' evaluation frame, one partition per batch."""
LABEL_COLUMN = "_label"
SCORE_PREFIX = "_score_"
WEBHOOK_URL_ENV = "PYNOMALY_NOTIFY_WEBHOOK_URL"
KEEP_ALIASES = ("champion", "challenger")

RecordedScores = Callable[["ModelVersionInfo"], "tuple[pd.DataFrame, np.ndarray] | None"]


# ======================================================================== model health
@dataclass
class VersionHealth:
    """The health of one registered model version."""

    version: str
    detector: str | None
    aliases: list[str]
    loaded: bool
    """The model directory verified (signature, file checksums, registry digest) and loaded."""
    max_abs_diff: float | None
    """Largest ``|rescored - recorded|`` over the compared rows (inf when NaN-ness differs)."""
    rows_compared: int
    reproducible: bool
    """Loaded, and every re-computed score within ``atol + rtol * |recorded|``."""
    error: str | None
    archived_now: bool
    model_dir: str | None = None
    archive_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def candidate_batch(info: ModelVersionInfo) -> str | None:
    """The training batch of a version the lifecycle logged: its model directory is ``<batch>-<detector>``.

    None for a version whose model directory does not follow that naming.
    """
    if not info.model_dir or not info.detector:
        return None
    name = Path(info.model_dir).name
    suffix = f"-{info.detector}"
    if not name.endswith(suffix) or len(name) == len(suffix):
        return None
    return name[: -len(suffix)]


def recorded_scores_from_frame_store(frame_store: Any, feed: str) -> RecordedScores:
    """The default lookup of a version's recorded sample: the lifecycle's evaluation frame.

    ``detector_candidates`` stores, per training batch, the evaluation rows with one column
    ``_score_<detector>`` per candidate at ``[feed, "detector_candidates", "evaluation"]``
    (partition = batch). The returned callable gives ``(feature frame, recorded scores)``
    for a version, None for a version not logged by the lifecycle, and raises
    ``FileNotFoundError`` (naming the file) when the batch's frame is gone, or ``KeyError``
    when it has no score column for the version's detector.

    ``frame_store`` is a :class:`~pynomaly_core.storage.FrameStore` (or anything with a
    ``store()`` method returning one, e.g. the Dagster resource).
    """
    store: FrameStore = frame_store.store() if hasattr(frame_store, "store") else frame_store
    key = [feed, *EVALUATION_STAGE]

    def lookup(info: ModelVersionInfo) -> tuple[pd.DataFrame, np.ndarray] | None:
        batch = candidate_batch(info)
        if batch is None:
            return None
        frame = store.read(key, batch)
        column = f"{SCORE_PREFIX}{info.detector}"
        if column not in frame.columns:
            raise KeyError(
                f"{store.path(key, batch)} has no column {column!r} (recorded scores of "
                f"detector {info.detector!r}); columns: {sorted(map(str, frame.columns))}"
            )
        scores = frame[column].to_numpy(dtype=float)
        features = frame.drop(
            columns=[c for c in frame.columns if c == LABEL_COLUMN or str(c).startswith(SCORE_PREFIX)]
        )
        return features, scores

    return lookup


def _compare(rescored: np.ndarray, recorded: np.ndarray, rtol: float, atol: float) -> tuple[float, bool]:
    """(max |difference|, all within tolerance); NaN equals NaN, NaN vs a number differs by inf."""
    with np.errstate(all="ignore"):
        diff = np.abs(rescored - recorded)
        both_nan = np.isnan(rescored) & np.isnan(recorded)
        diff = np.where(both_nan, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)  # one NaN: incomparable
        same_inf = np.isinf(rescored) & (rescored == recorded)
        diff = np.where(same_inf, 0.0, diff)
        ok = diff <= atol + rtol * np.abs(np.where(np.isfinite(recorded), recorded, 0.0))
    return (float(diff.max()) if diff.size else 0.0), bool(ok.all())


def _check_one(
    info: ModelVersionInfo,
    recorded_scores: RecordedScores,
    sample_rows: int,
    rtol: float,
    atol: float,
) -> VersionHealth:
    from pynomaly_core.detectors.persistence import load_object

    health = VersionHealth(
        version=info.version, detector=info.detector, aliases=list(info.aliases), loaded=False,
        max_abs_diff=None, rows_compared=0, reproducible=False, error=None, archived_now=False,
        model_dir=info.model_dir,
    )
    where = f"registered model {info.registered_model!r} version {info.version} ({info.detector or 'unknown detector'})"
    if not info.model_dir:
        health.error = f"{where} has no version tag 'pynomaly.model_dir': its model cannot be located"
        return health
    if not info.manifest_sha256:
        health.error = (
            f"{where} has no version tag 'pynomaly.manifest_sha256': its model directory "
            f"{info.model_dir} cannot be verified against the digest recorded at training"
        )
        return health
    try:
        model = load_object(info.model_dir, expected_sha256=info.manifest_sha256)
        if not callable(getattr(model, "decision_function", None)):
            raise TypeError(f"{type(model).__name__} has no decision_function")
    except Exception as exc:  # noqa: BLE001 - missing files, tampering, a dependency that changed: report
        health.error = f"{where}: model directory {info.model_dir} could not be loaded: {type(exc).__name__}: {exc}"
        return health
    health.loaded = True
    try:
        recorded = recorded_scores(info)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable sample is a finding, not a crash
        health.error = f"{where}: its recorded scores could not be read: {type(exc).__name__}: {exc}"
        return health
    if recorded is None:
        health.error = f"{where}: no recorded sample of scores to compare with (not logged by the lifecycle)"
        return health
    frame, scores = recorded
    frame = frame.head(sample_rows)
    expected = np.asarray(scores, dtype=float)[: len(frame)]
    if len(expected) != len(frame):
        health.error = f"{where}: the recorded sample has {len(frame)} rows but {len(expected)} recorded scores"
        return health
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rescored = np.asarray(model.decision_function(frame), dtype=float).reshape(-1)
    except Exception as exc:  # noqa: BLE001 - e.g. a preprocessing change rejects the columns
        health.error = f"{where}: re-scoring its recorded sample failed: {type(exc).__name__}: {exc}"
        return health
    if rescored.shape != expected.shape:
        health.error = f"{where}: re-scoring gave {rescored.size} scores for {expected.size} recorded rows"
        return health
    health.rows_compared = int(expected.size)
    health.max_abs_diff, health.reproducible = _compare(rescored, expected, rtol, atol)
    return health


def check_model_versions(
    tracker: Tracker,
    feed: str,
    recorded_scores: RecordedScores,
    *,
    sample_rows: int = 500,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    archive: bool = True,
    reason: str = "weekly maintenance: neither champion nor challenger",
    include_archived: bool = False,
) -> list[VersionHealth]:
    """Reload and re-score every active registered version of ``feed``; archive those without an alias.

    Parameters
    ----------
    tracker
        :class:`pynomaly_core.tracking.Tracker` of the feed's registry.
    feed
        The feed (registered model ``"{prefix}-{feed}"``).
    recorded_scores
        ``info -> (feature frame, recorded scores)`` of the fixed sample the version scored
        when it was trained, or None when there is none; default lookup:
        :func:`recorded_scores_from_frame_store`.
    sample_rows
        Rows of the sample re-scored (the first ones).
    rtol, atol
        A score is reproduced when ``|rescored - recorded| <= atol + rtol * |recorded|``.
    archive
        Archive (tag ``pynomaly.archived=true``) every checked version that has no alias
        (``champion``, ``challenger`` or any other) and is not archived yet.
    reason
        The archive reason tag.
    include_archived
        Also check versions archived before (their files may have been removed by retention,
        which would be reported as errors every week); default False.

    Returns
    -------
    list of VersionHealth
        One per checked version, oldest first. A version that cannot be loaded or re-scored is
        reported with ``error``, never raised; an unreachable registry raises
        :class:`~pynomaly_core.tracking.TrackingError`.
    """
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be >= 1, got {sample_rows}")
    versions = tracker.list_versions(feed, include_archived=include_archived)
    results = []
    for listed in versions:
        # search_model_versions (behind list_versions) leaves aliases empty on MLflow 3's SQL
        # store; get_model_version fills them, and archiving must never touch an aliased version
        try:
            info = tracker.get_version(feed, listed.version)
        except Exception:  # noqa: BLE001 - deleted meanwhile: check what was listed, archive nothing
            info = dataclasses.replace(listed, aliases=["(unknown: the version could not be re-read)"])
        health = _check_one(info, recorded_scores, sample_rows, rtol, atol)
        if archive and not info.aliases and not info.archived:
            try:
                tracker.archive_version(feed, info.version, reason)
                health.archived_now = True
            except Exception as exc:  # noqa: BLE001 - e.g. an alias set meanwhile; the others still run
                health.archive_error = (
                    f"registered model {info.registered_model!r} version {info.version} could not be "
                    f"archived: {type(exc).__name__}: {exc}"
                )
        results.append(health)
    return results


def health_section(results: Iterable[VersionHealth]) -> dict[str, Any]:
    """The report's ``model_health`` section of :func:`check_model_versions`' results."""
    rows = list(results)
    return {
        "versions_checked": len(rows),
        "reproducible": sum(r.reproducible for r in rows),
        "unreproducible": sum(not r.reproducible for r in rows),
        "failed_to_load": sum(not r.loaded for r in rows),
        "archived_now": sum(r.archived_now for r in rows),
        "versions": [
            {
                "version": r.version, "detector": r.detector, "aliases": ", ".join(r.aliases),
                "loaded": r.loaded, "reproducible": r.reproducible, "rows_compared": r.rows_compared,
                "max_abs_diff": r.max_abs_diff, "archived_now": r.archived_now,
                "error": r.error or r.archive_error,
            }
            for r in rows
        ],
    }


# ======================================================================== retention
@dataclass
class CleanupResult:
    """What :func:`retention_cleanup` removed."""

    removed: dict[str, int]
    """Table name or file kind -> rows or entries (files, model directories) removed."""
    cutoffs: dict[str, str]
    """Table name or file kind -> ISO date: everything dated before it was removed."""
    freed_bytes: int
    """Bytes of the removed files (table rows are not counted)."""
    kept_models: int = 0
    """Old model directories and candidate evaluation frames kept: an active registered version
    uses them, or no tracker was given to tell (plus other old paths of ``protect``)."""
    skipped_tables: list[str] = field(default_factory=list)
    """Tables of ``table_days`` that do not exist (reported as 0 removed)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PATH_DAY = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_MANIFEST = "manifest.json"


def _path_day(relative: str) -> dt.date | None:
    """The last valid ``YYYY-MM-DD`` in ``relative``, else None."""
    for match in reversed(list(_PATH_DAY.finditer(relative))):
        try:
            return dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
    return None


def _entry_day(path: Path, root: Path, mtime_file: Path) -> dt.date:
    day = _path_day(path.relative_to(root).as_posix())
    if day is not None:
        return day
    return dt.datetime.fromtimestamp(mtime_file.stat().st_mtime, dt.UTC).date()


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _remove_tree(path: Path) -> None:
    """Rename first, so an interrupted removal never leaves a half model directory under its name."""
    doomed = path.with_name(f".tmp-removing-{path.name}-{uuid.uuid4().hex[:8]}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """``(path, is_model_dir)`` of every regular file and signed model directory under ``root``.

    Symbolic links are neither followed nor returned; a model directory (one holding
    ``manifest.json``) is returned as a unit and not descended into.
    """
    for directory, subdirs, files in os.walk(root, followlinks=False):
        here = Path(directory)
        if here != root and _MANIFEST in files:
            subdirs[:] = []
            yield here, True
            continue
        subdirs[:] = [d for d in subdirs if not (here / d).is_symlink()]
        for name in files:
            path = here / name
            if not path.is_symlink() and path.is_file():
                yield path, False


def _is_protected(path: Path, protected: set[Path]) -> bool:
    resolved = path.resolve()
    return resolved in protected or any(parent in protected for parent in resolved.parents)


def _is_evaluation_frame(path: Path) -> bool:
    """A candidates' evaluation frame (``.../detector_candidates/evaluation/<batch>.parquet``)."""
    return tuple(path.parent.parts[-len(EVALUATION_STAGE):]) == EVALUATION_STAGE


def _check_file_root(kind: str, root: Path) -> Path:
    root = Path(root).resolve()
    home = pynomaly_home()
    if root == home or root in home.parents or root == Path(root.anchor):
        raise ValueError(
            f"retention file dir {kind!r} = {root} is PYNOMALY_HOME or contains it (the warehouse, "
            "the MLflow store and the signing key live there): give the feed's own report, frame or "
            "model directory"
        )
    return root


def _protected_by_registry(tracker: Tracker, feed: str, frame_store: Any) -> set[Path]:
    protected: set[Path] = set()
    store = frame_store.store() if hasattr(frame_store, "store") else frame_store
    for info in tracker.list_versions(feed, include_archived=False):
        if info.model_dir:
            protected.add(Path(info.model_dir).resolve())
        batch = candidate_batch(info)
        if store is not None and batch is not None:
            protected.add(store.path([feed, *EVALUATION_STAGE], batch).resolve())
    return protected


def _delete_old_rows(engine: sa.Engine, name: str, feed: str, cutoff: dt.date, schema: str | None) -> int | None:
    """Rows of ``feed`` dated before ``cutoff`` deleted from table ``name``; None if it does not exist."""
    dialect = _dialect(engine)
    table = _qualified(dialect, name, schema)
    with engine.begin() as conn:
        if not sa.inspect(conn).has_table(name, schema=schema):
            return None
        day: dt.date | str = cutoff if dialect == "postgresql" else cutoff.isoformat()
        result = conn.execute(
            sa.text(f"DELETE FROM {table} WHERE feed = :feed AND partition_date < :cutoff"),
            {"feed": feed, "cutoff": day},
        )
        return int(result.rowcount)


def retention_cleanup(
    engine: sa.Engine,
    feed: str,
    *,
    today: dt.date,
    table_days: Mapping[str, int],
    file_dirs: Mapping[str, tuple[Path, int]],
    schema: str | None = None,
    tracker: Tracker | None = None,
    frame_store: Any = None,
    protect: Collection[Path] = (),
) -> CleanupResult:
    """Delete ``feed``'s warehouse rows and files older than their retention.

    Parameters
    ----------
    engine
        The warehouse (:func:`pynomaly_core.export.make_engine`).
    feed
        Only this feed's rows are deleted (``WHERE feed = :feed``).
    today
        Rows and files dated before ``today - days`` are removed; ``today - days`` itself is kept.
    table_days
        Table name -> retention in days, by ``partition_date``. A table that does not exist is
        skipped (0 removed). One transaction per table.
    file_dirs
        Kind (e.g. ``"reports"``, ``"frames"``, ``"models"``) -> ``(directory, days)``; the
        directories must be the feed's own (e.g. ``frames/<feed>``). A file is dated by the last
        ``YYYY-MM-DD`` in its path below the directory, else by its modification time (UTC). A
        directory holding ``manifest.json`` is a signed model directory, dated by its path or
        its manifest's modification time, and removed as a whole, only when ``tracker`` is given
        and no active (non-archived) registered version of the feed points at it; the same holds
        for the candidates' evaluation frames (``.../detector_candidates/evaluation/<batch>.parquet``),
        which model health re-scores. Symbolic links are left alone; directories emptied by the
        cleanup are removed.
    schema
        PostgreSQL schema of the tables.
    tracker
        The feed's registry: protects the model directories of its active versions (and, with
        ``frame_store``, their recorded evaluation frames, which model health re-scores).
    frame_store
        Where the lifecycle stored the evaluation frames (see :func:`recorded_scores_from_frame_store`).
    protect
        More paths never removed.

    Returns
    -------
    CleanupResult
        Counts per table and kind; a second call with the same arguments removes nothing.
    """
    if not isinstance(feed, str) or not feed or "\x00" in feed:
        raise ValueError(f"feed must be a non-empty string without NUL characters, got {feed!r}")
    if isinstance(today, dt.datetime):
        today = today.date()
    removed: dict[str, int] = {}
    cutoffs: dict[str, str] = {}
    skipped: list[str] = []
    for name, days in table_days.items():
        validate_identifier(name)
        if int(days) < 1:
            raise ValueError(f"retention of table {name!r} must be at least 1 day, got {days}")
        cutoff = today - dt.timedelta(days=int(days))
        cutoffs[name] = cutoff.isoformat()
        count = _delete_old_rows(engine, name, feed, cutoff, schema)
        if count is None:
            skipped.append(name)
        removed[name] = count or 0

    protected = {Path(p).resolve() for p in protect}
    if tracker is not None:
        protected |= _protected_by_registry(tracker, feed, frame_store)
    freed = kept_models = 0
    for kind, (directory, days) in file_dirs.items():
        if kind in removed:
            raise ValueError(f"file kind {kind!r} is also a table of table_days: give it another name")
        if int(days) < 1:
            raise ValueError(f"retention of file kind {kind!r} ({directory}) must be at least 1 day, got {days}")
        root = _check_file_root(kind, Path(directory))
        cutoff = today - dt.timedelta(days=int(days))
        cutoffs[kind] = cutoff.isoformat()
        removed[kind] = 0
        if not root.is_dir():
            continue
        touched: set[Path] = set()
        for path, is_model in list(_walk(root)):
            day = _entry_day(path, root, path / _MANIFEST if is_model else path)
            if day >= cutoff:
                continue
            registry_owned = is_model or _is_evaluation_frame(path)
            if _is_protected(path, protected) or (registry_owned and tracker is None):
                kept_models += registry_owned
                continue
            if is_model:
                size = _tree_bytes(path)
                _remove_tree(path)
            else:
                size = path.stat().st_size
                path.unlink()
            freed += size
            removed[kind] += 1
            touched.add(path.parent)
        _prune_empty(root, touched)
    return CleanupResult(removed=removed, cutoffs=cutoffs, freed_bytes=freed, kept_models=kept_models,
                         skipped_tables=skipped)


def _prune_empty(root: Path, touched: set[Path]) -> None:
    """Remove directories the cleanup emptied, up to (not including) ``root``."""
    for directory in sorted(touched, key=lambda p: len(p.parts), reverse=True):
        current = directory
        while current != root and root in current.parents:
            try:
                current.rmdir()  # only if empty
            except OSError:
                break
            current = current.parent


def cleanup_section(result: CleanupResult) -> dict[str, Any]:
    """The report's ``cleanup`` section of a :class:`CleanupResult`."""
    return {
        "removed": [
            {"what": what, "removed": count, "dated_before": result.cutoffs.get(what)}
            for what, count in result.removed.items()
        ],
        "freed_bytes": result.freed_bytes,
        "kept_models": result.kept_models,
        "skipped_tables": ", ".join(result.skipped_tables),
    }


# ======================================================================== notifications
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
)
"""Notifications of the maintenance jobs; ``partition_date`` is the UTC day of ``created_at``.

``channel`` is ``webhook`` when a webhook URL was configured (``delivered`` true/false, NULL
while the POST is in flight) or ``table`` when the notification was only recorded here
(``delivered`` NULL). The webhook URL itself is never stored.
"""


@dataclass
class NotifyResult:
    """What :func:`notify` did."""

    sent: bool
    """A notification was recorded (and posted when a webhook URL was given)."""
    suppressed_reason: str | None
    delivered: bool | None
    """None when no webhook URL was given or nothing was sent."""
    error: str | None
    notification_id: str | None = None


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"now must be timezone-aware (e.g. datetime.now(timezone.utc)), got naive {moment}")
    return moment.astimezone(dt.UTC)


def _sql_time(dialect: str, moment: dt.datetime) -> dt.datetime | str:
    return moment if dialect == "postgresql" else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_sql_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return dt.datetime.fromisoformat(str(value))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _redact(text: str, secret: str | None) -> str:
    """``text`` without the webhook URL or its path/query (where webhook tokens live)."""
    if not secret:
        return text
    parts = urllib.parse.urlsplit(secret)
    for piece in (secret, secret.rstrip("/"), parts.path + (f"?{parts.query}" if parts.query else ""),
                  parts.query, parts.netloc):
        if piece and len(piece) > 1 and piece != "/":
            text = text.replace(piece, "***")
    return text


def _post(url: str, body: bytes, timeout_s: float) -> str | None:
    """POST ``body``; the error (None on a 2xx answer), never containing the URL."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return f"notification webhook ({WEBHOOK_URL_ENV}) must be an http(s) URL, got scheme {scheme!r}"
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "pynomaly-maintenance"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # the scheme is checked above
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"notification webhook ({WEBHOOK_URL_ENV}) answered HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"notification webhook ({WEBHOOK_URL_ENV}) cannot be reached: {exc.reason}"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"notification webhook ({WEBHOOK_URL_ENV}) failed: {type(exc).__name__}: {exc}"
    if not 200 <= status < 300:
        return f"notification webhook ({WEBHOOK_URL_ENV}) answered HTTP {status}"
    return None


def notify(
    engine: sa.Engine,
    feed: str,
    kind: str,
    message: str,
    payload: dict,
    *,
    webhook_url: str | None,
    cooldown: dt.timedelta,
    now: dt.datetime | None = None,
    schema: str | None = None,
    timeout_s: float = 5.0,
    severity: str = "warning",
) -> NotifyResult:
    """Record a notification in table ``notifications`` and POST it to the webhook, unless one is recent.

    Suppressed (nothing written, nothing posted) when a notification of the same ``feed`` and
    ``kind`` was recorded after ``now - cooldown`` and was delivered, is still in flight, or
    was only recorded (no webhook); one whose delivery *failed* does not hold back the next.
    Otherwise the row is committed first (so a concurrent call is suppressed), then posted as
    JSON ``{"notification_id", "feed", "kind", "severity", "created_at", "message", "payload"}``
    and updated with the outcome. A failing webhook is recorded (``delivered`` false,
    ``delivery_error``) and does not raise. The webhook URL is a secret: it is written nowhere
    (occurrences in ``message`` or ``payload`` are replaced by ``***``).
    """
    if not isinstance(kind, str) or not kind.strip() or "\x00" in kind:
        raise ValueError(f"notification kind must be a non-empty string, got {kind!r}")
    if severity not in NOTIFICATION_SEVERITIES:
        raise ValueError(f"notification severity {severity!r}: allowed {list(NOTIFICATION_SEVERITIES)}")
    if cooldown < dt.timedelta(0):
        raise ValueError(f"notification cooldown must not be negative, got {cooldown}")
    moment = _utc(now or dt.datetime.now(dt.UTC))
    webhook_url = webhook_url or None
    message = _redact(str(message), webhook_url)
    payload_text = _redact(json.dumps(_json_safe(payload), allow_nan=False), webhook_url)
    notification_id = uuid.uuid4().hex

    ensure_table(engine, NOTIFICATIONS_TABLE, schema)
    dialect = _dialect(engine)
    table = _qualified(dialect, NOTIFICATIONS_TABLE.name, schema)
    index = _quote("ix_notifications_feed_kind_created_at")
    with engine.begin() as conn:
        if dialect == "postgresql":  # concurrent CREATE ... IF NOT EXISTS can collide in the catalog
            _advisory_lock(conn, table, "ddl")
        conn.execute(sa.text(f'CREATE INDEX IF NOT EXISTS {index} ON {table} ("feed", "kind", "created_at")'))
    payload_sql = "CAST(:payload AS JSONB)" if dialect == "postgresql" else ":payload"
    row = {
        "feed": feed, "day": moment.date() if dialect == "postgresql" else moment.date().isoformat(),
        "id": notification_id, "kind": kind, "created_at": _sql_time(dialect, moment), "severity": severity,
        "message": message, "payload": payload_text, "channel": "webhook" if webhook_url else "table",
    }
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            if dialect == "postgresql":
                _advisory_lock(conn, table, feed, kind, "notify")
            # the insert comes first: on SQLite it takes the write lock, so a concurrent call
            # waits here and then sees this row in its cooldown query
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (feed, partition_date, notification_id, kind, created_at, severity, "
                    f"message, payload, channel, delivered, delivery_error) VALUES (:feed, :day, :id, :kind, "
                    f":created_at, :severity, :message, {payload_sql}, :channel, NULL, NULL)"
                ),
                row,
            )
            last = conn.execute(
                sa.text(
                    f"SELECT created_at, channel, delivered FROM {table} WHERE feed = :feed AND kind = :kind "
                    "AND notification_id <> :id AND created_at > :since "
                    "AND (delivered IS NULL OR delivered = :yes) ORDER BY created_at DESC LIMIT 1"
                ),
                {"feed": feed, "kind": kind, "id": notification_id, "yes": True,
                 "since": _sql_time(dialect, moment - cooldown)},
            ).first()
            if last is not None:
                transaction.rollback()
                when = _from_sql_time(last[0])
                state = "recorded only" if last[1] == "table" else (
                    "delivered" if last[2] else "delivery in flight")
                return NotifyResult(
                    sent=False, delivered=None, error=None,
                    suppressed_reason=(
                        f"a {kind!r} notification of feed {feed!r} was sent at {when.isoformat()} ({state}), "
                        f"within the cooldown of {cooldown}; the next one is allowed after "
                        f"{(when + cooldown).isoformat()}"
                    ),
                )
            transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise

    if webhook_url is None:
        return NotifyResult(sent=True, suppressed_reason=None, delivered=None, error=None,
                            notification_id=notification_id)
    body = json.dumps({
        "notification_id": notification_id, "feed": feed, "kind": kind, "severity": severity,
        "created_at": moment.isoformat(), "message": message, "payload": json.loads(payload_text),
    }).encode()
    error = _post(webhook_url, body, timeout_s)
    if error is not None:
        error = _redact(error, webhook_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {table} SET delivered = :delivered, delivery_error = :error "
                    "WHERE notification_id = :id"),
            {"delivered": error is None, "error": error, "id": notification_id},
        )
    return NotifyResult(sent=True, suppressed_reason=None, delivered=error is None, error=error,
                        notification_id=notification_id)


# ======================================================================== report
SECTION_ORDER = ("quality", "drift", "performance", "retrains", "cleanup", "model_health")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")

# threshold -> (section, metric, direction): "max" crosses above, "min" below
THRESHOLDS: dict[str, tuple[str, str, str]] = {
    "max_drift_share": ("drift", "drift_share", "max"),
    "min_quality_success_percent": ("quality", "success_percent", "min"),
    "max_retrains": ("retrains", "count", "max"),
    "min_average_precision": ("performance", "average_precision", "min"),
    "max_unreproducible_versions": ("model_health", "unreproducible", "max"),
}


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="none">–</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return html.escape(f"{value:.6g}" if math.isfinite(value) else str(value))
    if isinstance(value, dict):
        return _key_value_table(value)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return _records_table(value)
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def _key_value_table(values: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in values.items())
    return f"<table class=\"kv\">{rows}</table>"


def _records_table(records: list[dict]) -> str:
    columns: list[str] = []
    for record in records:
        columns += [str(k) for k in record if str(k) not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(record.get(c))}</td>" for c in columns) + "</tr>" for record in records
    )
    return f"<table class=\"records\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}"
    "h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ddd;padding:3px 8px;"
    "text-align:left;vertical-align:top;font-size:.9em}th{background:#f4f4f4}.none{color:#999}"
)


def render_report(feed: str, week: str, sections: dict[str, dict], out_dir: Path) -> tuple[Path, Path]:
    """Write the week's report: one self-contained HTML page and one JSON file.

    The HTML has one section per entry of ``sections`` (``quality``, ``drift``,
    ``performance``, ``retrains``, ``cleanup``, ``model_health`` first, in that order, then
    any other): scalars as a key/value table, lists of dicts as tables, every value
    HTML-escaped; no script, no external resource. The JSON holds ``feed``, ``week``,
    ``generated_at`` and the sections (non-finite numbers as null). Both files are written
    atomically as ``<out_dir>/maintenance_<feed>_<week>.html|json``.

    Returns
    -------
    (html_path, json_path)
    """
    for what, value in (("feed", feed), ("week", week)):
        if not isinstance(value, str) or _SAFE_NAME.fullmatch(value) is None:
            raise ValueError(f"report {what} {value!r} must be 1-128 characters from [A-Za-z0-9_.-] (it names the file)")
    for name, section in sections.items():
        if not isinstance(section, Mapping):
            raise TypeError(f"report section {name!r} must be a dict, got {type(section).__name__}")
    ordered = [s for s in SECTION_ORDER if s in sections] + [s for s in sections if s not in SECTION_ORDER]
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    safe_sections = {name: _json_safe(sections[name]) for name in ordered}
    document = {"feed": feed, "week": week, "generated_at": generated, "sections": safe_sections}

    title = f"Pynomaly weekly maintenance: {feed}, week {week}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Generated {html.escape(generated)}.</p>",
    ]
    for name in ordered:
        section = safe_sections[name]
        heading = name.replace("_", " ").capitalize()
        parts.append(f'<section id="{html.escape(name)}"><h2>{html.escape(heading)}</h2>')
        parts.append(_key_value_table(section) if section else "<p>Nothing this week.</p>")
        parts.append("</section>")
    parts.append("</body></html>")

    out_dir = Path(out_dir)
    html_path = out_dir / f"maintenance_{feed}_{week}.html"
    json_path = out_dir / f"maintenance_{feed}_{week}.json"
    atomic_write_text(json_path, json.dumps(document, indent=2, allow_nan=False))
    atomic_write_text(html_path, "\n".join(parts))
    return html_path, json_path


def _numbers(value: Any) -> list[float]:
    values = value if isinstance(value, list | tuple) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        try:
            number = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return out


def crossed_thresholds(sections: dict[str, dict], thresholds: dict[str, float]) -> list[str]:
    """The thresholds the week crossed, as human-readable reasons (empty: nothing to notify).

    ``thresholds`` keys are those of :data:`THRESHOLDS` (other keys not starting with
    ``max_``/``min_``, e.g. ``cooldown_hours``, are ignored, so a settings model can be passed
    as its ``model_dump()``); ``max_unreproducible_versions`` defaults to 0. A metric may be a
    number or a list of numbers (e.g. per day): ``max_`` thresholds compare the largest,
    ``min_`` the smallest. A section or metric that is absent is not a crossing.
    """
    unknown = [k for k in thresholds if k.startswith(("max_", "min_")) and k not in THRESHOLDS]
    if unknown:
        raise ValueError(f"unknown notification threshold(s) {unknown}; known: {sorted(THRESHOLDS)}")
    limits = {"max_unreproducible_versions": 0.0, **{k: v for k, v in thresholds.items() if k in THRESHOLDS}}
    reasons = []
    for key, limit in limits.items():
        if limit is None:
            continue
        section, metric, direction = THRESHOLDS[key]
        numbers = _numbers((sections.get(section) or {}).get(metric))
        if not numbers:
            continue
        if direction == "max" and max(numbers) > limit:
            reasons.append(f"{section}.{metric} {max(numbers):.4g} is above {key} = {limit:g}")
        elif direction == "min" and min(numbers) < limit:
            reasons.append(f"{section}.{metric} {min(numbers):.4g} is below {key} = {limit:g}")
    return reasons
