"""Retention: delete a feed's warehouse rows and files older than their retention.

:func:`retention_cleanup` deletes a feed's warehouse rows older than each table's retention
(through :func:`pynomaly_core.warehouse.delete_before`) and old files (reports, frames, model
directories), never a model directory or evaluation frame an active registered version uses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pynomaly_core.lifecycle import EVALUATION_STAGE
from pynomaly_core.maintenance.health import candidate_batch
from pynomaly_core.paths import pynomaly_home
from pynomaly_core.warehouse import delete_before, validate_identifier
from pynomaly_core.warehouse.sql import validate_feed

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.tracking import Tracker

__all__ = ["CleanupResult", "cleanup_section", "retention_cleanup"]


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
    return tuple(path.parent.parts[-len(EVALUATION_STAGE) :]) == EVALUATION_STAGE


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
        The warehouse (:func:`pynomaly_core.warehouse.make_engine`).
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
        Where the lifecycle stored the evaluation frames (see :func:`~pynomaly_core.maintenance.health.recorded_scores_from_frame_store`).
    protect
        More paths never removed.

    Returns
    -------
    CleanupResult
        Counts per table and kind; a second call with the same arguments removes nothing.
    """
    validate_feed(feed)
    if isinstance(today, dt.datetime):
        today = today.date()
    result = CleanupResult(removed={}, cutoffs={}, freed_bytes=0)
    _clean_tables(engine, feed, today, table_days, schema, result)
    protected = {Path(p).resolve() for p in protect}
    if tracker is not None:
        protected |= _protected_by_registry(tracker, feed, frame_store)
    for kind, (directory, days) in file_dirs.items():
        if kind in result.removed:
            raise ValueError(
                f"file kind {kind!r} is also a table of table_days: give it another name"
            )
        cutoff = _cutoff(today, days, f"retention of file kind {kind!r} ({directory})")
        root = _check_file_root(kind, Path(directory))
        result.cutoffs[kind] = cutoff.isoformat()
        result.removed[kind] = 0
        if not root.is_dir():
            continue
        removed, freed, kept = _remove_old_entries(
            root, cutoff, protected, registry_known=tracker is not None
        )
        result.removed[kind] += removed
        result.freed_bytes += freed
        result.kept_models += kept
    return result


def _cutoff(today: dt.date, days: int, what: str) -> dt.date:
    """``today - days``: what is dated before it goes; at least one day is always kept."""
    if int(days) < 1:
        raise ValueError(f"{what} must be at least 1 day, got {days}")
    return today - dt.timedelta(days=int(days))


def _clean_tables(
    engine: sa.Engine,
    feed: str,
    today: dt.date,
    table_days: Mapping[str, int],
    schema: str | None,
    result: CleanupResult,
) -> None:
    """Delete ``feed``'s rows older than each table's retention, one transaction per table."""
    for name, days in table_days.items():
        validate_identifier(name)
        cutoff = _cutoff(today, days, f"retention of table {name!r}")
        result.cutoffs[name] = cutoff.isoformat()
        count = delete_before(engine, name, feed=feed, before=cutoff, schema=schema)
        if count is None:
            result.skipped_tables.append(name)
        result.removed[name] = count or 0


def _remove_old_entries(
    root: Path, cutoff: dt.date, protected: set[Path], *, registry_known: bool
) -> tuple[int, int, int]:
    """Remove the files and model directories under ``root`` dated before ``cutoff``.

    Returns ``(entries removed, bytes freed, registry-owned entries kept)``. Model directories and
    evaluation frames are only removed when the registry is known (``registry_known``) and they are
    not ``protected``; directories the removal emptied are removed too.
    """
    removed = freed = kept = 0
    touched: set[Path] = set()
    for path, is_model in list(_walk(root)):
        day = _entry_day(path, root, path / _MANIFEST if is_model else path)
        if day >= cutoff:
            continue
        registry_owned = is_model or _is_evaluation_frame(path)
        if _is_protected(path, protected) or (registry_owned and not registry_known):
            kept += registry_owned
            continue
        if is_model:
            size = _tree_bytes(path)
            _remove_tree(path)
        else:
            size = path.stat().st_size
            path.unlink()
        freed += size
        removed += 1
        touched.add(path.parent)
    _prune_empty(root, touched)
    return removed, freed, kept


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
