"""Candidates: split the training window, fit every candidate detector, and log the batch.

:func:`train_candidate_batch` is the whole ``detector_candidates`` stage without Dagster:
holdout split, fitting (:func:`train_candidates`), the evaluation set and its scores, the
stored evaluation frame, the evaluation's pick refitted on the whole window
(``lifecycle.refit_on_window``, :mod:`~pynomaly_core.lifecycle.refit`), one signed model
directory and one MLflow run (and registered version) per usable candidate, and the value the
champion decision reads.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.data.preprocess import FeaturePreprocessor
from pynomaly_core.features.derived import Derivation, derive
from pynomaly_core.lifecycle.evaluation import (
    EvaluationKind,
    EvaluationSet,
    choose_challenger,
    evaluate,
    evaluation_set,
    score_models,
    write_evaluation_frame,
)
from pynomaly_core.lifecycle.feedback import (
    labels_for,
    training_verdicts,
    with_feedback_candidate,
)
from pynomaly_core.lifecycle.record import LifecycleError
from pynomaly_core.lifecycle.refit import TRAINING_AND_HOLDOUT, Refit, refit_on_window
from pynomaly_core.lifecycle.window import format_days, frame_days
from pynomaly_core.model import AnomalyModel, SeriesOrder
from pynomaly_core.severity import SeverityCutoffs
from pynomaly_core.storage import FrameStore

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.tracking import Tracker

ONE_DAY_HOLDOUT_FRACTION = 0.2
#: MLflow run and version tag: the UTC days of the training window (:func:`format_days`), so a kept
#: champion, read back from the registry, still knows what it has seen
TAG_TRAINING_DAYS = "pynomaly.training_days"
#: MLflow run and version tag: the UTC days of the rows the model was fitted on (the whole window
#: when refitted, else the window minus its holdout), so a user sees which rows a champion learnt
TAG_FITTED_DAYS = "pynomaly.fitted_days"
_LOG = logging.getLogger(__name__)

#: Sequence-aware candidates a time-aware feed (an ``entity`` or ``derived`` section) gets in its
#: default portfolio, with small settings so a first training stays quick on a CPU: short windows,
#: few epochs, early stopping. ``lifecycle.candidates`` with ``detector.params`` overrides them.
SEQUENCE_CANDIDATE_PARAMS: dict[str, dict[str, Any]] = {
    "ConvAE": {
        "window_size": 16,
        "channels": [16, 8],
        "epochs": 15,
        "batch_size": 128,
        "patience": 3,
    },
    "LSTMAE": {
        "window_size": 16,
        "hidden_size": 16,
        "epochs": 10,
        "batch_size": 128,
        "patience": 3,
    },
}
#: seats of the default portfolio a time-aware feed gives to sequence-aware candidates
SEQUENCE_SEATS = 2

#: ``feedback(first_day, last_day)``: reviewer verdicts (columns record_key, label) of those holdout days
FeedbackReader = Callable[[str, str], "pd.DataFrame | None"]


def severity_cutoffs(feed: FeedConfig) -> SeverityCutoffs:
    s = feed.severity
    return SeverityCutoffs(medium=s.medium, high=s.high, critical=s.critical)


def split_holdout(frame: pd.DataFrame, feed: FeedConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the holdout is the window's last ``holdout_days`` UTC days."""
    times = pd.to_datetime(frame[feed.event_time], utc=True)
    days = times.dt.floor("D")
    unique = np.sort(days.dropna().unique())
    if len(unique) > feed.lifecycle.holdout_days:
        mask = (days >= unique[-feed.lifecycle.holdout_days]).to_numpy()
    else:
        rank = times.rank(method="first").to_numpy()
        mask = rank > (1 - ONE_DAY_HOLDOUT_FRACTION) * len(frame)
    train, holdout = frame[~mask], frame[mask]
    if len(holdout) == 0 or len(train) == 0:
        raise ValueError(
            f"feed {feed.name!r}: the training window ({len(frame)} rows) cannot be split into "
            f"training and lifecycle.holdout_days={feed.lifecycle.holdout_days} of holdout"
        )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def time_aware(feed: FeedConfig) -> bool:
    """Whether ``feed`` declares its rows a series (an ``entity`` or a ``derived`` section)."""
    return feed.entity is not None or feed.derived is not None


def sequence_candidates(feed: FeedConfig) -> list[str]:
    """The sequence-aware detectors a time-aware feed's default portfolio adds (installed ones:
    they need torch), at most :data:`SEQUENCE_SEATS` and never more than leaves a row-wise seat."""
    if not time_aware(feed):
        return []
    from pynomaly_core.detectors.sequence import sequence_aware_names

    installed = set(sequence_aware_names(installed_only=True))
    seats = min(SEQUENCE_SEATS, feed.lifecycle.max_candidates - 1)
    return [n for n in SEQUENCE_CANDIDATE_PARAMS if n in installed][: max(seats, 0)]


def candidate_names(feed: FeedConfig, n_rows: int) -> list[str]:
    """The detectors to train: ``lifecycle.candidates`` or the default portfolio, with
    ``detector.name`` first; semi-supervised detectors only when the feed has labels.

    A time-aware feed's default portfolio seats :func:`sequence_candidates` next to the row-wise
    registry portfolio (which keeps the other seats)."""
    from pynomaly_core.detectors import get_spec

    settings = feed.lifecycle
    if settings.candidates:
        names = list(settings.candidates)
    else:
        from pynomaly_core.detectors.auto import default_portfolio

        sequence = sequence_candidates(feed)
        names = [
            *sequence,
            *default_portfolio(
                n_rows,
                len(feed.features),
                max_candidates=max(settings.max_candidates - len(sequence), 1),
            ),
        ]
    ordered = [feed.detector.name, *[n for n in names if n != feed.detector.name]]
    chosen: list[str] = []
    for name in ordered:
        spec = get_spec(name)  # raises naming the unknown detector
        if spec.supervision != "unsupervised" and feed.label is None:
            continue
        if name not in chosen:
            chosen.append(name)
    return chosen[: max(settings.max_candidates, 1)]


@dataclass
class Candidate:
    name: str
    model: AnomalyModel | None
    fit_seconds: float
    error: str | None = None


def _labels(frame: pd.DataFrame, feed: FeedConfig) -> np.ndarray | None:
    if feed.label is None:
        return None
    return cast(
        "np.ndarray | None",
        pd.to_numeric(frame[feed.label], errors="coerce").fillna(0).astype(int).to_numpy(),
    )


def _input_example(feed: FeedConfig, train: pd.DataFrame) -> pd.DataFrame:
    """MLflow's input example: the features, plus event time (ISO text: MLflow's schema has no
    time-zone-aware type) and entity when the model derives features."""
    if Derivation.of(feed) is None:
        return train[[f.name for f in feed.features]].head(5)
    columns = [c for c in (feed.event_time, feed.entity, *(f.name for f in feed.features)) if c]
    example = train[list(dict.fromkeys(columns))].head(5).copy()
    example[feed.event_time] = pd.to_datetime(example[feed.event_time], utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    return example


def train_candidates(
    feed: FeedConfig,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    names: list[str],
    verdicts: np.ndarray | None = None,
) -> list[Candidate]:
    """Fit each candidate on ``train`` (shared preprocessing); a failing candidate is kept
    with its error so the evaluation shows why it is missing.

    A feed with derived features: every model derives them itself (one shared derived frame and
    preprocessor here), and the holdout's first rows get their warm-up from the training rows."""
    derivation = Derivation.of(feed)
    inputs = AnomalyModel(feed.features, derivation=derivation).input_features
    derived_train = derive(train, derivation) if derivation is not None else train
    preprocessor = FeaturePreprocessor(
        [f.model_dump() for f in inputs], scaling=feed.detector.scaling
    ).fit(derived_train)
    X = preprocessor.transform(derived_train)
    labels = _labels(train, feed)
    out = []
    series = SeriesOrder(feed.event_time, feed.entity)
    for name in names:
        params = (
            dict(feed.detector.params)
            if name == feed.detector.name
            else dict(SEQUENCE_CANDIDATE_PARAMS.get(name, {}))
        )
        model = AnomalyModel(
            feed.features,
            detector=name,
            contamination=feed.detector.contamination,
            params=params,
            random_state=feed.detector.random_state,
            scaling=feed.detector.scaling,
            severity_cutoffs=severity_cutoffs(feed),
            derivation=derivation,
            series=series,
        )
        start = time.perf_counter()
        try:
            # numeric warnings (e.g. PyOD's PCA dividing by a zero-variance component) are not
            # lost: non-finite scores are detected and reported as the candidate's error
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model.fit(train, labels_for(name, labels, verdicts), preprocessor=preprocessor, X=X)
                holdout_scores = model.decision_function(
                    holdout, history=_holdout_history(model, train, holdout, feed)
                )
            model.calibrate(np.concatenate([model.train_scores_, holdout_scores]))
        except Exception as exc:  # noqa: BLE001 - one broken candidate must not sink the others
            out.append(
                Candidate(name, None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
            )
            continue
        out.append(Candidate(name, model, time.perf_counter() - start))
    return out


def _holdout_history(
    model: AnomalyModel, train: pd.DataFrame, holdout: pd.DataFrame, feed: FeedConfig
) -> pd.DataFrame | None:
    """The training rows the holdout's first rows need as warm-up (derived features, windows)."""
    if not model.needs_history:
        return None
    start = pd.to_datetime(holdout[feed.event_time], utc=True).min()
    return model.history_tail(train, start)


def float_metrics(row: pd.Series) -> dict[str, float]:
    """The finite numeric entries of one row of the evaluation table (what MLflow and the value record)."""
    return {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, (int, float, np.floating, np.integer))
        and not isinstance(v, bool)
        and np.isfinite(v)
    }


@dataclass
class CandidateBatch:
    """One training batch: every candidate fitted, evaluated, saved and logged (see :meth:`to_value`)."""

    feed: str
    batch: str
    run_id: str
    evalset: EvaluationSet
    evaluation_path: Path
    table: pd.DataFrame
    """The evaluation table of :func:`~pynomaly_core.lifecycle.evaluate`, one row per candidate."""
    training_rows: int
    holdout_rows: int
    records: list[dict[str, Any]]
    """Per candidate: detector, error, fit_seconds and, when usable, where its model and MLflow run are."""
    training_days: tuple[str, ...] = ()
    """UTC days of the training window (training and holdout rows): what every candidate has seen."""
    refit: dict[str, Any] | None = None
    """The candidate the evaluation picked and refitted on the whole window (``lifecycle.refit_on_window``):
    detector, fitted_days, calibration, seconds, error (why it kept the evaluated model); None: off."""

    @property
    def failed(self) -> int:
        return int(sum(r["error"] is not None for r in self.records))

    def shown_table(self) -> pd.DataFrame:
        """The evaluation table to show, without the error column when no candidate failed."""
        return self.table.drop(columns=[c for c in ("error",) if self.table[c].isna().all()])

    def to_value(self) -> dict[str, Any]:
        """The JSON document the ``detector_candidates`` asset stores (read by :func:`promote`)."""
        return {
            "feed": self.feed,
            "batch": self.batch,
            "dagster_run_id": self.run_id,
            "evaluation": {**self.evalset.describe(), "path": str(self.evaluation_path)},
            "training_rows": self.training_rows,
            "holdout_rows": self.holdout_rows,
            "candidates": self.records,
            "training_days": list(self.training_days),
            "refit": self.refit,
        }


def train_candidate_batch(
    feed: FeedConfig,
    window: pd.DataFrame,
    *,
    frames: FrameStore,
    model_dir: Callable[[str], Path],
    tracker: Tracker,
    run_id: str,
    feedback: FeedbackReader | None = None,
    reason: str = "manual",
    tags: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
    signing_key: bytes | None = None,
) -> CandidateBatch:
    """Train, evaluate, save and log every candidate of ``feed`` on the training ``window``.

    ``model_dir(version)`` is the directory a candidate's model is saved to; the evaluation
    frame goes to ``frames`` (:func:`~pynomaly_core.lifecycle.write_evaluation_frame`);
    ``run_id`` (the orchestrator's run) names the batch and is recorded on every MLflow run with
    ``reason`` and the extra ``tags``; ``signing_key`` signs the saved models (None: the default
    key). Raises :class:`LifecycleError` when the window cannot be split, a candidate is unknown,
    no evaluation set can be built or every candidate fails.
    """
    log = logger or _LOG
    try:
        train, holdout = split_holdout(window, feed)
        names = candidate_names(feed, len(train))
        train_verdicts = training_verdicts(feed, train, feedback)
        names = with_feedback_candidate(names, train_verdicts)
    except ValueError as exc:
        raise LifecycleError(str(exc)) from exc
    log.info(f"training {len(names)} candidates on {len(train)} rows: {', '.join(names)}")
    candidates = train_candidates(feed, train, holdout, names, train_verdicts)
    days = pd.to_datetime(holdout[feed.event_time], utc=True).dt.strftime("%Y-%m-%d")
    verdicts = feedback(days.min(), days.max()) if feedback is not None else None
    try:
        evalset = evaluation_set(
            feed, train, holdout, verdicts, random_state=feed.detector.random_state or 0
        )
    except ValueError as exc:
        raise LifecycleError(str(exc)) from exc
    fitted = {c.name: c.model for c in candidates if c.model is not None}
    if not fitted:
        raise LifecycleError(
            f"feed {feed.name!r}: every candidate failed to fit (lifecycle.candidates): "
            + "; ".join(f"{c.name}: {c.error}" for c in candidates)
        )
    scores = score_models(fitted, evalset)
    table = evaluate(candidates, evalset, scores)
    picked, refit, refit_error = _refit_picked(
        feed, window, candidates, table, evalset.kind, feedback, log
    )

    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    batch = f"{stamp}-{run_id[:8]}"
    # the registered model of the picked candidate is the refit: record its scores too, so the
    # weekly model-health check re-scores a version against what that version itself gave
    refit_scores = (
        score_models({picked: refit.model}, evalset)
        if picked is not None and refit is not None
        else None
    )
    evaluation_path = write_evaluation_frame(
        frames, feed.name, batch, evalset, scores, refit_scores
    )
    days = frame_days(window, feed.event_time)
    run_tags = {
        "dagster_run_id": run_id,
        "feed": feed.name,
        "reason": reason,
        **(tags or {}),
        TAG_TRAINING_DAYS: format_days(days),
    }
    params = {
        "contamination": feed.detector.contamination,
        "scaling": feed.detector.scaling,
        "training_rows": len(train),
        "holdout_rows": len(holdout),
        "evaluation": evalset.kind,
    }
    example = _input_example(feed, train)
    train_days = frame_days(train, feed.event_time)
    records = []
    for c in candidates:
        entry: dict[str, Any] = {
            "detector": c.name,
            "error": table.loc[c.name, "error"],
            "fit_seconds": float(c.fit_seconds),
        }
        if c.model is not None and entry["error"] is None:
            version = f"{batch}-{c.name}"
            refitted = refit if c.name == picked else None
            model = refitted.model if refitted is not None else c.model
            # which rows the registered model learnt, beside the holdout evidence it is judged on
            lineage: dict[str, Any] = {
                "refit_on_window": refitted is not None,
                "fitted_rows": int(model.training_rows_),
                "calibration": refitted.calibration
                if refitted is not None
                else TRAINING_AND_HOLDOUT,
            }
            fitted_days = refitted.fitted_days if refitted is not None else train_days
            entry.update(
                _save_and_log(
                    feed,
                    c.name,
                    model,
                    model_dir(version),
                    version=version,
                    tracker=tracker,
                    run_id=run_id,
                    params={"detector": c.name, **params, **lineage, **(c.model.params or {})},
                    metrics=float_metrics(table.loc[c.name]),
                    tags={**run_tags, TAG_FITTED_DAYS: format_days(fitted_days)},
                    input_example=example,
                    evaluation=table.reset_index(),
                    signing_key=signing_key,
                )
            )
            entry.update(lineage, fitted_days=list(fitted_days))
        records.append(entry)
    refit_value = (
        None
        if picked is None
        else {
            "detector": picked,
            "fitted_days": list(refit.fitted_days) if refit is not None else list(train_days),
            "calibration": refit.calibration if refit is not None else TRAINING_AND_HOLDOUT,
            "seconds": float(refit.seconds) if refit is not None else None,
            "error": refit_error,
        }
    )
    return CandidateBatch(
        feed.name,
        batch,
        run_id,
        evalset,
        evaluation_path,
        table,
        len(train),
        len(holdout),
        records,
        days,
        refit_value,
    )


def _refit_picked(
    feed: FeedConfig,
    window: pd.DataFrame,
    candidates: list[Candidate],
    table: pd.DataFrame,
    kind: EvaluationKind,
    feedback: FeedbackReader | None,
    log: logging.Logger,
) -> tuple[str | None, Refit | None, str | None]:
    """(picked, refit, error): the candidate the evaluation picks (:func:`choose_challenger`, as
    :func:`~pynomaly_core.lifecycle.promote` will) refitted on the whole ``window``
    (:func:`~pynomaly_core.lifecycle.refit.refit_on_window`). ``picked`` is None when
    ``lifecycle.refit_on_window`` is off; a failed refit keeps the evaluated model and says why."""
    if not feed.lifecycle.refit_on_window:
        return None, None, None
    try:
        picked = choose_challenger(table, kind)
    except ValueError:
        return None, None, None
    model = next(c.model for c in candidates if c.name == picked)
    if model is None:  # choose_challenger only picks fitted candidates
        return None, None, None
    try:
        verdicts = training_verdicts(feed, window, feedback)
        refit = refit_on_window(
            model,
            window,
            feed.event_time,
            labels_for(picked, _labels(window, feed), verdicts),
            folds=feed.lifecycle.calibration_folds,
        )
    except Exception as exc:  # noqa: BLE001 - the evaluated model is still a valid candidate
        error = f"refit of {picked} on the whole window failed, the evaluated model is kept: {type(exc).__name__}: {exc}"
        log.warning(error)
        return picked, None, error
    log.info(
        f"{picked} refitted on the whole window ({refit.model.training_rows_} rows, "
        f"{refit.fitted_days[0]}..{refit.fitted_days[-1]}), calibrated {refit.calibration}, "
        f"in {refit.seconds:.1f} s"
    )
    return picked, refit, None


def _save_and_log(
    feed: FeedConfig,
    detector: str,
    model: AnomalyModel,
    path: Path,
    *,
    version: str,
    tracker: Tracker,
    run_id: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    input_example: pd.DataFrame,
    evaluation: pd.DataFrame,
    signing_key: bytes | None,
) -> dict[str, Any]:
    """Save one usable candidate as a signed model directory and log it as an MLflow run and
    registered version; the entry fields that say where both are."""
    from pynomaly_core.detectors.persistence import sha256_file

    model.save(
        path, info={"feed": feed.name, "version": version, "run_id": run_id}, key=signing_key
    )
    sha = sha256_file(path / "manifest.json")
    record = tracker.log_candidate(
        feed.name,
        detector=detector,
        model_dir=path,
        manifest_sha256=sha,
        params=params,
        metrics=metrics,
        tags=tags,
        input_example=input_example,
        evaluation=evaluation,
        signing_key=signing_key,
    )
    return {
        "model_dir": str(path),
        "manifest_sha256": sha,
        "threshold": float(model.threshold_),
        "mlflow_run_id": record.run_id,
        "mlflow_version": record.version,
        "registered_model": record.registered_model,
        "run_url": record.run_url,
        "metrics": metrics,
    }
