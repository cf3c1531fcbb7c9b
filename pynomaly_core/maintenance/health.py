"""Model health: does every active registered version of a feed still load and reproduce its scores?

:func:`check_model_versions` reloads every active registered version of a feed under the
installed dependencies (verifying its signed manifest and the digest the registry recorded),
re-scores the fixed sample its candidate run scored and compares the scores; versions without
an alias are then archived (:meth:`Tracker.archive_version`, a tag). :func:`champion_week`
re-evaluates the champion on the week's labels. This module never imports dagster (nor
mlflow: the tracker passed in does that).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pynomaly_core.evaluation.health import labelled_metrics
from pynomaly_core.lifecycle import read_evaluation_frame

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.storage import FrameStore
    from pynomaly_core.tracking import ModelVersionInfo, Tracker

__all__ = [
    "RecordedScores",
    "VersionHealth",
    "candidate_batch",
    "champion_rows",
    "champion_week",
    "check_model_versions",
    "health_section",
    "recorded_scores_from_frame_store",
]

RecordedScores = Callable[["ModelVersionInfo"], "tuple[pd.DataFrame, np.ndarray] | None"]


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
    ``_score_<detector>`` per candidate, and ``_refit_score_<detector>`` for the candidate whose
    registered model was refitted on the whole window (:func:`pynomaly_core.lifecycle.write_evaluation_frame`,
    read back with :func:`~pynomaly_core.lifecycle.read_evaluation_frame`). The returned callable gives ``(feature frame, recorded scores)``
    for a version, None for a version not logged by the lifecycle, and raises
    ``FileNotFoundError`` (naming the file) when the batch's frame is gone, or ``KeyError``
    when it has no score column for the version's detector.

    ``frame_store`` is a :class:`~pynomaly_core.storage.FrameStore` (or anything with a
    ``store()`` method returning one, e.g. the Dagster resource).
    """
    store: FrameStore = frame_store.store() if hasattr(frame_store, "store") else frame_store

    def lookup(info: ModelVersionInfo) -> tuple[pd.DataFrame, np.ndarray] | None:
        batch = candidate_batch(info)
        if batch is None:
            return None
        stored = read_evaluation_frame(store, feed, batch)
        return stored.frame, stored.registered_scores_of(str(info.detector))

    return lookup


def _compare(
    rescored: np.ndarray, recorded: np.ndarray, rtol: float, atol: float
) -> tuple[float, bool]:
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
    signing_key: bytes | None = None,
) -> VersionHealth:
    from pynomaly_core.detectors.persistence import load_object

    health = VersionHealth(
        version=info.version,
        detector=info.detector,
        aliases=list(info.aliases),
        loaded=False,
        max_abs_diff=None,
        rows_compared=0,
        reproducible=False,
        error=None,
        archived_now=False,
        model_dir=info.model_dir,
    )
    where = f"registered model {info.registered_model!r} version {info.version} ({info.detector or 'unknown detector'})"
    if not info.model_dir:
        health.error = (
            f"{where} has no version tag 'pynomaly.model_dir': its model cannot be located"
        )
        return health
    if not info.manifest_sha256:
        health.error = (
            f"{where} has no version tag 'pynomaly.manifest_sha256': its model directory "
            f"{info.model_dir} cannot be verified against the digest recorded at training"
        )
        return health
    try:
        model = load_object(info.model_dir, expected_sha256=info.manifest_sha256, key=signing_key)
        if not callable(getattr(model, "decision_function", None)):
            raise TypeError(f"{type(model).__name__} has no decision_function")
    except Exception as exc:  # noqa: BLE001 - missing files, tampering, a dependency that changed: report
        health.error = f"{where}: model directory {info.model_dir} could not be loaded: {type(exc).__name__}: {exc}"
        return health
    health.loaded = True
    try:
        recorded = recorded_scores(info)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable sample is a finding, not a crash
        health.error = (
            f"{where}: its recorded scores could not be read: {type(exc).__name__}: {exc}"
        )
        return health
    if recorded is None:
        health.error = (
            f"{where}: no recorded sample of scores to compare with (not logged by the lifecycle)"
        )
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
        health.error = (
            f"{where}: re-scoring its recorded sample failed: {type(exc).__name__}: {exc}"
        )
        return health
    if rescored.shape != expected.shape:
        health.error = (
            f"{where}: re-scoring gave {rescored.size} scores for {expected.size} recorded rows"
        )
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
    signing_key: bytes | None = None,
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
    signing_key
        The key the versions' signatures are verified with (None: the default signing key).

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
            info = dataclasses.replace(
                listed, aliases=["(unknown: the version could not be re-read)"]
            )
        health = _check_one(info, recorded_scores, sample_rows, rtol, atol, signing_key)
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
                "version": r.version,
                "detector": r.detector,
                "aliases": ", ".join(r.aliases),
                "loaded": r.loaded,
                "reproducible": r.reproducible,
                "rows_compared": r.rows_compared,
                "max_abs_diff": r.max_abs_diff,
                "archived_now": r.archived_now,
                "error": r.error or r.archive_error,
            }
            for r in rows
        ],
    }


def champion_rows(frames: Sequence[pd.DataFrame], version: str) -> pd.DataFrame:
    """The rows of the week's scored frames that champion ``version`` scored (others left out)."""
    scored = pd.concat(frames, ignore_index=True)
    return scored[scored["model_version"].astype(str) == str(version)].reset_index(drop=True)


def champion_week(
    scored: pd.DataFrame, labels: pd.Series, version: str, top_k: int
) -> dict[str, Any]:
    """The champion's week for the report: rows and labelled rows, and its labelled metrics.

    ``scored`` are the champion's rows (:func:`champion_rows`), ``labels`` their known labels
    (NaN where unknown, aligned with ``scored``). Average precision, ROC-AUC and precision at
    ``top_k`` are added only when both anomalies and normal rows are labelled.
    """
    known = labels.notna().to_numpy()
    y = labels[known].astype(int).to_numpy()
    week: dict[str, Any] = {
        "champion_version": str(version),
        "rows": len(scored),
        "labelled_rows": int(known.sum()),
        "labelled_anomalies": int(y.sum()),
    }
    if y.sum() >= 1 and (y == 0).sum() >= 1:
        week.update(labelled_metrics(y, scored.loc[known, "score"].to_numpy(float), top_k))
    return week
