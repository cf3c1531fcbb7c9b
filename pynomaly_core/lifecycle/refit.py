"""Refit on the whole window: the candidate the evaluation picked, fitted on every day it saw.

The lifecycle holds the training window's last day(s) out to evaluate the candidates
(:func:`~pynomaly_core.lifecycle.split_holdout`). That day is also the newest: a retrain is
triggered by the day whose checks failed, and it is the last day of the retrain's window. A
model fitted without it never fits the change that triggered it (measured on NAB
``ec2_cpu_utilization_5f5533``: a level drop learnt two days late, ``docs/benchmarks.md``).
So, with ``lifecycle.refit_on_window`` (the default), once the evaluation has picked the
candidate, :func:`refit_on_window` fits the same configuration again on the whole window,
holdout included, and that model is the one registered. The evidence the champion decision and
the promotion gate read stays what it says: scores of the model fitted without the holdout, on
the holdout (the usual "select on a validation split, then refit on all the data").

Calibration (conformal p-values, severity) must not reuse the rows the detector was fitted on:
a detector's scores of its own training rows are optimistic, and so would its p-values be. The
refitted model is calibrated on **cross-fitted** scores: the window is cut into
``lifecycle.calibration_folds`` contiguous blocks of UTC days (of rows in time order when the
window is a single day), a fresh model of the same configuration is fitted on the other blocks
and scores the block (its first rows with the rows before them as warm-up), so every row's
calibration score comes from a model that did not see it. Each is taken as its rank among its
fold model's training scores and put on the refitted model's scale at the same rank (some
detectors' raw scale depends on the training set). This is cross-conformal calibration with a
final refit (as MAPIE's ``cv`` method pairs out-of-fold residuals with the full-data model): a
day scored later relates to the refitted model as an out-of-fold row to its fold's model. Where
unseen rows rank above the training rows (a detector that overfits, or a window whose last days
moved), the p-values say so; on stationary data they match the training scores'. The threshold stays the detector's own (the ``contamination`` quantile of its training
scores, now of the whole window): that is the contract of ``contamination``, and the share of
alerts on a normal day is what the monitoring checks measure against the feed's normal days.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pynomaly_core.lifecycle.window import frame_days
from pynomaly_core.model import QUANTILE_LEVELS, AnomalyModel

#: how the refitted model's p-values are calibrated (recorded in the champion record and MLflow)
CROSS_FIT = "cross-fit"
#: how a model fitted without the holdout is calibrated: its training scores plus the holdout's
TRAINING_AND_HOLDOUT = "training+holdout"


@dataclass(frozen=True)
class Refit:
    """A model refitted on the whole window and calibrated on out-of-fold scores."""

    model: AnomalyModel
    fitted_days: tuple[str, ...]
    """The UTC days of the rows the model was fitted on (the whole window)."""
    folds: int
    """Blocks of the cross-fitted calibration scores."""
    calibration_rows: int
    seconds: float

    @property
    def calibration(self) -> str:
        """What the record says about the p-values: ``cross-fit (5 folds)``."""
        return f"{CROSS_FIT} ({self.folds} folds)"


def time_blocks(frame: pd.DataFrame, event_time: str, folds: int) -> list[np.ndarray]:
    """Boolean row masks of ``frame`` cutting it into at most ``folds`` contiguous blocks in time.

    Whole UTC days when the frame has at least two (blocks of days, ``np.array_split`` of the
    sorted days); else rows in event-time order. Every row is in exactly one block.
    """
    times = pd.to_datetime(frame[event_time], utc=True)
    days = times.dt.strftime("%Y-%m-%d").to_numpy()
    unique = sorted(pd.unique(days[pd.notna(days)]))
    if len(unique) >= 2:
        groups = np.array_split(np.array(unique), min(folds, len(unique)))
        return [np.isin(days, g) for g in groups]
    order = np.argsort(times.to_numpy(), kind="stable")
    out = []
    for chunk in np.array_split(order, min(folds, len(frame))):
        mask = np.zeros(len(frame), dtype=bool)
        mask[chunk] = True
        out.append(mask)
    return out


def _warmup(
    model: AnomalyModel, window: pd.DataFrame, block: pd.DataFrame, event_time: str
) -> pd.DataFrame | None:
    """The rows of ``window`` before ``block`` that ``model`` needs to score it (None: none)."""
    if not model.needs_history:
        return None
    start = pd.to_datetime(block[event_time], utc=True).min()
    return model.history_tail(window, start)


def _ranks(
    fold: AnomalyModel, window: pd.DataFrame, block: pd.DataFrame, event_time: str
) -> np.ndarray:
    """``block`` scored by ``fold`` (with its warm-up from ``window``), as ranks among its training scores."""
    history = _warmup(fold, window, block, event_time)
    raw = np.asarray(
        fold.decision_function(block)
        if history is None
        else fold.decision_function(block, history=history),
        dtype=float,
    )
    return np.asarray(np.interp(raw, fold.quantiles_, QUANTILE_LEVELS), dtype=float)


def out_of_fold_ranks(
    model: AnomalyModel,
    window: pd.DataFrame,
    event_time: str,
    labels: np.ndarray | None,
    folds: int,
) -> np.ndarray:
    """Per row of ``window``: its score by a model with ``model``'s configuration fitted on the
    other :func:`time_blocks`, as the share of that fold model's training scores below it (its
    normalized score; ``labels``: the ``y`` of each fit, for semi-supervised detectors).

    A rank, not the raw score: the scale of some detectors' scores depends on their training set
    (OCSVM's, with the number of rows), so raw scores of the fold models and of the model fitted
    on the whole window do not compare; each model's rank among its own training scores does."""
    window = window.reset_index(drop=True)
    scores = np.full(len(window), np.nan)
    for inside in time_blocks(window, event_time, folds):
        fold = model.unfitted().fit(
            window[~inside].reset_index(drop=True), None if labels is None else labels[~inside]
        )
        block = window[inside].reset_index(drop=True)
        scores[inside] = _ranks(fold, window, block, event_time)
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise ValueError(
            f"detector {model.detector!r} gave {bad} non-finite out-of-fold score(s) of {len(scores)}"
        )
    return scores


def held_out_scores(
    model: AnomalyModel,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    window: pd.DataFrame,
    event_time: str,
) -> np.ndarray:
    """The ``holdout`` rows scored out of sample, on ``model``'s scale.

    A model refitted on the whole window has been fitted on its holdout, so its scores of those
    rows are in-sample (lower than a new day's). A model of the same configuration is fitted on
    ``train`` (the window without the holdout) and scores the holdout (with the rows before it as
    warm-up from ``window``); each score is taken as its rank among that model's training scores
    and put on ``model``'s scale at the same rank, as :func:`refit_on_window` does for its
    calibration. Unsupervised detectors only (a supervised fit needs the window's labels)."""
    holdout = holdout.reset_index(drop=True)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fold = model.unfitted().fit(train.reset_index(drop=True))
        ranks = _ranks(fold, window, holdout, event_time)
    return np.asarray(np.interp(ranks, QUANTILE_LEVELS, model.quantiles_), dtype=float)


def refit_on_window(
    model: AnomalyModel,
    window: pd.DataFrame,
    event_time: str,
    labels: np.ndarray | None = None,
    *,
    folds: int = 5,
) -> Refit:
    """``model``'s configuration fitted on the whole ``window``, calibrated on out-of-fold scores.

    ``model`` is the evaluated candidate (only its configuration is used); ``labels`` the ``y``
    it is fitted with (semi-supervised detectors, the feedback-aware one), one per window row.
    Raises what a fit raises (the caller keeps the evaluated model then).
    """
    start = time.perf_counter()
    window = window.reset_index(drop=True)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ranks = out_of_fold_ranks(model, window, event_time, labels, folds)
        refitted = model.unfitted().fit(window, labels)
    # each out-of-fold rank as the refitted model's raw score of that rank
    calibration = np.interp(ranks, QUANTILE_LEVELS, refitted.quantiles_)
    refitted.calibrate(calibration)
    return Refit(
        refitted,
        frame_days(window, event_time),
        len(time_blocks(window, event_time, folds)),
        len(calibration),
        time.perf_counter() - start,
    )
