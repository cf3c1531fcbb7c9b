"""The evaluation set every model is judged on, and the frame that keeps it between stages.

:func:`evaluation_set` labels the holdout (labels and feedback, else synthetic anomalies),
:func:`score_models` and :func:`evaluate` measure every candidate on it and
:func:`choose_challenger` picks the best. The rows, their labels and every candidate's raw
scores are stored once per training batch (:func:`write_evaluation_frame`) so the champion
decision and the weekly model-health check re-read exactly the rows the candidates were
measured on (:func:`read_evaluation_frame`); these two functions are the only places that
know the frame's layout.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.model import AnomalyModel
from pynomaly_core.storage import FrameStore

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.lifecycle.candidates import Candidate

EvaluationKind = Literal["labels", "feedback", "synthetic"]

#: frame-store key (after the feed) of the evaluation frames, one partition per training batch
EVALUATION_STAGE = ("detector_candidates", "evaluation")
#: column of the evaluation frame holding the rows' labels (1 = anomaly)
LABEL_COLUMN = "_label"
#: prefix of the evaluation frame's score columns: ``_score_<detector>``
SCORE_PREFIX = "_score_"
#: the column prefix of the registered model's raw scores where it is not the evaluated one: the
#: candidate refitted on the whole window (``lifecycle.refit_on_window``)
REFIT_SCORE_PREFIX = "_refit_score_"


@dataclass
class EvaluationSet:
    """Rows every model is scored on, with their labels (1 = anomaly)."""

    frame: pd.DataFrame
    y: np.ndarray
    kind: EvaluationKind
    n_holdout: int
    n_synthetic: int = 0
    synthetic_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": len(self.y),
            "anomalies": self.n_positive,
            "holdout_rows": self.n_holdout,
            "synthetic_rows": self.n_synthetic,
            "synthetic_kinds": self.synthetic_kinds,
        }

    @classmethod
    def from_description(
        cls, frame: pd.DataFrame, y: np.ndarray, described: dict[str, Any]
    ) -> EvaluationSet:
        """The set whose :meth:`describe` is ``described`` (as the candidates' value stores it)."""
        return cls(
            frame,
            y,
            described["kind"],
            described["holdout_rows"],
            described["synthetic_rows"],
            dict(described["synthetic_kinds"]),
        )


def labels_with_feedback(
    labels: pd.Series | None, keys: pd.Series, feedback: pd.DataFrame | None
) -> pd.Series:
    """Known labels (1 = anomaly) of rows: the label column (missing = normal), overridden by reviewer
    feedback (columns record_key, label; the latest verdict per key wins). NaN where neither says."""
    y = pd.Series(np.nan, index=keys.index, dtype="float64")
    if labels is not None:
        y = pd.to_numeric(labels, errors="coerce").fillna(0).astype("float64")
    if feedback is not None and len(feedback):
        verdict = feedback.drop_duplicates("record_key", keep="last").set_index("record_key")[
            "label"
        ]
        reviewed = keys.astype(str).map(verdict).astype("float64")
        y = reviewed.where(reviewed.notna(), y)
    return y


def evaluation_set(
    feed: FeedConfig,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    feedback: pd.DataFrame | None = None,
    *,
    random_state: int = 0,
) -> EvaluationSet:
    """Label the holdout from the label column and ``feedback`` (columns record_key,
    label), or fall back to synthetic anomalies (see :mod:`pynomaly_core.lifecycle`)."""
    settings = feed.lifecycle
    labels = holdout[feed.label] if feed.label is not None else None
    y = labels_with_feedback(labels, holdout[feed.record_key], feedback)
    kind: EvaluationKind = "labels"
    if feed.label is None and feedback is not None and len(feedback):
        kind = "feedback"
    known = y.notna().to_numpy()
    labelled = y[known].astype(int)
    if (
        labelled.sum() >= settings.min_labelled_anomalies
        and (labelled == 0).sum() >= settings.min_labelled_anomalies
    ):
        return EvaluationSet(
            holdout[known].reset_index(drop=True), labelled.to_numpy(), kind, int(known.sum())
        )

    from pynomaly_core.evaluation.synthetic import inject_frame

    numeric = [f.name for f in feed.features if f.type in ("float", "int")]
    if not numeric:
        raise ValueError(
            f"feed {feed.name!r}: no labels in the holdout and no numeric feature to inject synthetic "
            "anomalies into; set the feed's 'label' column or record feedback"
        )
    if feed.derived is not None or feed.entity is not None:
        return _series_evaluation_set(feed, holdout, numeric, random_state)
    synthetic = inject_frame(
        train, numeric, settings.synthetic_anomalies, random_state=random_state
    )
    kinds = synthetic["synthetic_kind"].value_counts().to_dict()
    synthetic = synthetic.drop(columns="synthetic_kind")
    frame = pd.concat([holdout, synthetic[holdout.columns]], ignore_index=True)
    y_all = np.r_[np.zeros(len(holdout), dtype=int), np.ones(len(synthetic), dtype=int)]
    return EvaluationSet(
        frame,
        y_all,
        "synthetic",
        len(holdout),
        len(synthetic),
        {k: int(v) for k, v in kinds.items()},
    )


def _series_evaluation_set(
    feed: FeedConfig, holdout: pd.DataFrame, numeric: list[str], random_state: int
) -> EvaluationSet:
    """A time-aware feed's label-free evaluation: series anomalies (spikes, shifts, variance, stuck,
    contextual) injected *into* the holdout before the models derive their features, so lags and
    windows see them as they would see a real fault; untouched holdout rows are the normal class
    (``n_holdout``: those rows, first in the frame; ``n_synthetic``: the injected rows after them).

    About ``lifecycle.synthetic_anomalies`` rows (12 per event), at most a fifth of the holdout."""
    from pynomaly_core.evaluation.series_synthetic import KINDS, RUN_ROWS, inject_series

    per_event = (1 + sum(RUN_ROWS) / 2 * (len(KINDS) - 1)) / len(KINDS)
    n_events = max(
        len(KINDS),
        min(
            int(np.ceil(feed.lifecycle.synthetic_anomalies / per_event)),
            int(0.2 * len(holdout) / per_event),
        ),
    )
    injected = inject_series(
        holdout.reset_index(drop=True),
        event_time=feed.event_time,
        columns=numeric,
        entity=feed.entity,
        n_events=n_events,
        random_state=random_state,
    )
    y = injected.y.astype(int)
    if y.sum() == 0 or (y == 0).sum() == 0:
        raise ValueError(
            f"feed {feed.name!r}: could not inject series anomalies into the {len(holdout)}-row holdout "
            "(too few rows per series); set the feed's 'label' column or raise lifecycle.holdout_days"
        )
    kinds = injected.events.groupby("kind")["rows"].sum().to_dict()
    # untouched rows first, then the injected ones (the positional contract of label_free_evidence);
    # row order does not change derived features, which follow event time
    order = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)]
    frame = injected.frame[holdout.columns].iloc[order].reset_index(drop=True)
    return EvaluationSet(
        frame,
        y[order],
        "synthetic",
        int((y == 0).sum()),
        int(y.sum()),
        {str(k): int(v) for k, v in kinds.items()},
    )


def score_models(models: dict[str, AnomalyModel], evalset: EvaluationSet) -> dict[str, np.ndarray]:
    """Raw scores of every model on the evaluation rows (non-finite ones are reported by :func:`evaluate`)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            name: np.asarray(m.decision_function(evalset.frame), dtype=float)
            for name, m in models.items()
        }


def evaluate(
    candidates: list[Candidate], evalset: EvaluationSet, scores: dict[str, np.ndarray]
) -> pd.DataFrame:
    """One row per candidate: fit time, metrics on the evaluation set, label-free evidence."""
    from pynomaly_core.evaluation.compare import metrics

    rows = []
    for c in candidates:
        row: dict[str, Any] = {"detector": c.name, "fit_seconds": c.fit_seconds, "error": c.error}
        if c.model is not None:
            s = scores[c.name]
            if np.isfinite(s).all():
                row.update(metrics(evalset.y, s))
            else:
                row["error"] = (
                    f"{int((~np.isfinite(s)).sum())} non-finite scores on the evaluation set"
                )
        rows.append(row)
    table = pd.DataFrame(rows).set_index("detector")
    ok = [c.name for c in candidates if c.model is not None and table.loc[c.name, "error"] is None]
    if evalset.kind == "synthetic" and len(ok) >= 1:
        from pynomaly_core.evaluation.labelfree import label_free_evidence

        h = evalset.n_holdout
        evidence = label_free_evidence(
            {n: scores[n][:h] for n in ok}, {n: scores[n][h:] for n in ok}
        )
        table = table.join(
            evidence.drop(columns=[c for c in evidence.columns if c in table.columns]), how="left"
        )
    return table


def choose_challenger(evaluation: pd.DataFrame, kind: EvaluationKind) -> str:
    """Best candidate: with labels the highest average precision (then ROC-AUC, then
    fit time); on synthetic sets the label-free rule of :mod:`pynomaly_core.evaluation.labelfree`."""
    usable = evaluation[evaluation["error"].isna()]
    if usable.empty:
        raise ValueError(
            "every candidate failed: "
            + "; ".join(f"{i}: {e}" for i, e in evaluation["error"].items())
        )
    if kind == "synthetic" and "selection_score" in usable:
        from pynomaly_core.evaluation.labelfree import select

        return select(usable)
    ranked = usable.sort_values(
        ["average_precision", "roc_auc", "fit_seconds"], ascending=[False, False, True]
    )
    return str(ranked.index[0])


# ------------------------------------------------------------------ the stored evaluation frame
def write_evaluation_frame(
    store: FrameStore,
    feed: str,
    batch: str,
    evalset: EvaluationSet,
    scores: dict[str, np.ndarray],
    refit_scores: dict[str, np.ndarray] | None = None,
) -> Path:
    """Store the evaluation rows with their labels (:data:`LABEL_COLUMN`) and each candidate's raw
    scores (``_score_<detector>``) as partition ``batch`` of ``[feed, *EVALUATION_STAGE]``.

    ``refit_scores`` are the raw scores, on the same rows, of a candidate whose registered model is
    not the evaluated one (refitted on the whole window): ``_refit_score_<detector>``, what the
    weekly model-health check re-scores the registered version against."""
    frame = evalset.frame.assign(**{LABEL_COLUMN: evalset.y})
    for name, s in scores.items():
        frame[f"{SCORE_PREFIX}{name}"] = s
    for name, s in (refit_scores or {}).items():
        frame[f"{REFIT_SCORE_PREFIX}{name}"] = s
    return store.write(frame, [feed, *EVALUATION_STAGE], batch)


@dataclass
class StoredEvaluation:
    """An evaluation frame read back: the feature rows, their labels and the candidates' raw scores."""

    frame: pd.DataFrame
    y: np.ndarray
    scores: dict[str, np.ndarray]
    path: Path
    refit_scores: dict[str, np.ndarray] = field(default_factory=dict)

    def registered_scores_of(self, detector: str) -> np.ndarray:
        """The recorded scores of the model registered for ``detector``: the refitted model's
        where the candidate was refitted on the whole window, else the evaluated model's."""
        if detector in self.refit_scores:
            return self.refit_scores[detector]
        return self.scores_of(detector)

    def scores_of(self, detector: str) -> np.ndarray:
        """The recorded scores of ``detector``; a KeyError naming the file when it has none."""
        if detector not in self.scores:
            raise KeyError(
                f"{self.path} has no column {SCORE_PREFIX}{detector!r} (recorded scores of detector "
                f"{detector!r}); recorded detectors: {sorted(self.scores)}"
            )
        return self.scores[detector]


def read_evaluation_frame(store: FrameStore, feed: str, batch: str) -> StoredEvaluation:
    """The evaluation frame :func:`write_evaluation_frame` stored for ``batch`` (FileNotFoundError
    naming the file when it is gone)."""
    key = [feed, *EVALUATION_STAGE]
    frame = store.read(key, batch)
    score_columns = [c for c in frame.columns if str(c).startswith(SCORE_PREFIX)]
    refit_columns = [c for c in frame.columns if str(c).startswith(REFIT_SCORE_PREFIX)]
    scores = {str(c)[len(SCORE_PREFIX) :]: frame[c].to_numpy(dtype=float) for c in score_columns}
    refit_scores = {
        str(c)[len(REFIT_SCORE_PREFIX) :]: frame[c].to_numpy(dtype=float) for c in refit_columns
    }
    y = frame[LABEL_COLUMN].to_numpy()
    features = frame.drop(columns=[LABEL_COLUMN, *score_columns, *refit_columns])
    return StoredEvaluation(features, y, scores, store.path(key, batch), refit_scores)
