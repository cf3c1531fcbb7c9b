"""Candidates, evaluation and the champion decision: the model lifecycle without Dagster.

1. :func:`split_holdout` keeps the last ``lifecycle.holdout_days`` days of the training
   window out of training (a one-day window holds out its last 20 % by event time).
2. :func:`train_candidates` fits every candidate detector on the rest, sharing one fitted
   preprocessor, and calibrates each on its training scores plus its out-of-sample
   holdout scores (:meth:`AnomalyModel.calibrate`).
3. :func:`evaluation_set` labels the holdout: the feed's label column and the BI users'
   feedback (confirmed = 1, rejected = 0) when they hold at least
   ``lifecycle.min_labelled_anomalies`` anomalies and as many normal rows; otherwise the
   holdout counts as normal and ``lifecycle.synthetic_anomalies`` synthetic anomalies
   (:func:`pynomaly_core.evaluation.synthetic.inject_frame`) are added.
4. :func:`evaluate` scores every model on that set (ROC-AUC, average precision,
   precision at k, plus the label-free evidence on synthetic sets) and
   :func:`choose_challenger` picks the best candidate.
5. :func:`decide` compares the challenger with the current champion on the *same* rows
   with a stratified paired bootstrap of average precision: the challenger replaces the
   champion only when the lower confidence bound of the difference is above zero.
   :func:`promotion_gate` then blocks any promotion whose ROC-AUC is below
   ``lifecycle.min_auc``, or whose average precision trails the champion's by more than
   ``lifecycle.max_regression`` or with statistical confidence (a forced promotion
   included).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.data.preprocess import FeaturePreprocessor
from pynomaly_core.model import AnomalyModel
from pynomaly_core.severity import SeverityCutoffs

EvaluationKind = Literal["labels", "feedback", "synthetic"]
ONE_DAY_HOLDOUT_FRACTION = 0.2


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


def candidate_names(feed: FeedConfig, n_rows: int) -> list[str]:
    """The detectors to train: ``lifecycle.candidates`` or the default portfolio, with
    ``detector.name`` first; semi-supervised detectors only when the feed has labels."""
    from pynomaly_core.detectors import get_spec

    settings = feed.lifecycle
    if settings.candidates:
        names = list(settings.candidates)
    else:
        from pynomaly_core.detectors.auto import default_portfolio

        names = default_portfolio(n_rows, len(feed.features), max_candidates=settings.max_candidates)
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
    return pd.to_numeric(frame[feed.label], errors="coerce").fillna(0).astype(int).to_numpy()


def train_candidates(feed: FeedConfig, train: pd.DataFrame, holdout: pd.DataFrame, names: list[str]) -> list[Candidate]:
    """Fit each candidate on ``train`` (shared preprocessing); a failing candidate is kept
    with its error so the evaluation shows why it is missing."""
    preprocessor = FeaturePreprocessor([f.model_dump() for f in feed.features], scaling=feed.detector.scaling).fit(train)
    X = preprocessor.transform(train)
    labels = _labels(train, feed)
    out = []
    for name in names:
        params = dict(feed.detector.params) if name == feed.detector.name else {}
        model = AnomalyModel(
            feed.features, detector=name, contamination=feed.detector.contamination, params=params,
            random_state=feed.detector.random_state, scaling=feed.detector.scaling,
            severity_cutoffs=severity_cutoffs(feed),
        )
        start = time.perf_counter()
        try:
            # numeric warnings (e.g. PyOD's PCA dividing by a zero-variance component) are not
            # lost: non-finite scores are detected and reported as the candidate's error
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model.fit(train, labels, preprocessor=preprocessor, X=X)
                holdout_scores = model.decision_function(holdout)
            model.calibrate(np.concatenate([model.detector_.decision_scores_, holdout_scores]))
        except Exception as exc:  # noqa: BLE001 - one broken candidate must not sink the others
            out.append(Candidate(name, None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(Candidate(name, model, time.perf_counter() - start))
    return out


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
            "kind": self.kind, "rows": len(self.y), "anomalies": self.n_positive,
            "holdout_rows": self.n_holdout, "synthetic_rows": self.n_synthetic,
            "synthetic_kinds": self.synthetic_kinds,
        }


def labels_with_feedback(labels: pd.Series | None, keys: pd.Series, feedback: pd.DataFrame | None) -> pd.Series:
    """Known labels (1 = anomaly) of rows: the label column (missing = normal), overridden by reviewer
    feedback (columns record_key, label; the latest verdict per key wins). NaN where neither says."""
    y = pd.Series(np.nan, index=keys.index, dtype="float64")
    if labels is not None:
        y = pd.to_numeric(labels, errors="coerce").fillna(0).astype("float64")
    if feedback is not None and len(feedback):
        verdict = feedback.drop_duplicates("record_key", keep="last").set_index("record_key")["label"]
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
    label), or fall back to synthetic anomalies (see the module docstring)."""
    settings = feed.lifecycle
    labels = holdout[feed.label] if feed.label is not None else None
    y = labels_with_feedback(labels, holdout[feed.record_key], feedback)
    kind: EvaluationKind = "labels"
    if feed.label is None and feedback is not None and len(feedback):
        kind = "feedback"
    known = y.notna().to_numpy()
    labelled = y[known].astype(int)
    if labelled.sum() >= settings.min_labelled_anomalies and (labelled == 0).sum() >= settings.min_labelled_anomalies:
        return EvaluationSet(holdout[known].reset_index(drop=True), labelled.to_numpy(), kind, int(known.sum()))

    from pynomaly_core.evaluation.synthetic import inject_frame

    numeric = [f.name for f in feed.features if f.type in ("float", "int")]
    if not numeric:
        raise ValueError(
            f"feed {feed.name!r}: no labels in the holdout and no numeric feature to inject synthetic "
            "anomalies into; set the feed's 'label' column or record feedback"
        )
    synthetic = inject_frame(train, numeric, settings.synthetic_anomalies, random_state=random_state)
    kinds = synthetic["synthetic_kind"].value_counts().to_dict()
    synthetic = synthetic.drop(columns="synthetic_kind")
    frame = pd.concat([holdout, synthetic[holdout.columns]], ignore_index=True)
    y_all = np.r_[np.zeros(len(holdout), dtype=int), np.ones(len(synthetic), dtype=int)]
    return EvaluationSet(frame, y_all, "synthetic", len(holdout), len(synthetic), {k: int(v) for k, v in kinds.items()})


def score_models(models: dict[str, AnomalyModel], evalset: EvaluationSet) -> dict[str, np.ndarray]:
    """Raw scores of every model on the evaluation rows (non-finite ones are reported by :func:`evaluate`)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: np.asarray(m.decision_function(evalset.frame), dtype=float) for name, m in models.items()}


def evaluate(candidates: list[Candidate], evalset: EvaluationSet, scores: dict[str, np.ndarray]) -> pd.DataFrame:
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
                row["error"] = f"{int((~np.isfinite(s)).sum())} non-finite scores on the evaluation set"
        rows.append(row)
    table = pd.DataFrame(rows).set_index("detector")
    ok = [c.name for c in candidates if c.model is not None and table.loc[c.name, "error"] is None]
    if evalset.kind == "synthetic" and len(ok) >= 1:
        from pynomaly_core.evaluation.labelfree import label_free_evidence

        h = evalset.n_holdout
        evidence = label_free_evidence({n: scores[n][:h] for n in ok}, {n: scores[n][h:] for n in ok})
        table = table.join(evidence.drop(columns=[c for c in evidence.columns if c in table.columns]), how="left")
    return table


def choose_challenger(evaluation: pd.DataFrame, kind: EvaluationKind) -> str:
    """Best candidate: with labels the highest average precision (then ROC-AUC, then
    fit time); on synthetic sets the label-free rule of :mod:`pynomaly_core.evaluation.labelfree`."""
    usable = evaluation[evaluation["error"].isna()]
    if usable.empty:
        raise ValueError("every candidate failed: " + "; ".join(f"{i}: {e}" for i, e in evaluation["error"].items()))
    if kind == "synthetic" and "selection_score" in usable:
        from pynomaly_core.evaluation.labelfree import select

        return select(usable)
    ranked = usable.sort_values(["average_precision", "roc_auc", "fit_seconds"], ascending=[False, False, True])
    return str(ranked.index[0])


@dataclass
class Decision:
    """The champion decision and the promotion gate's verdict."""

    champion: Literal["challenger", "incumbent"]
    challenger: str
    reason: str
    comparison: dict[str, Any] | None
    gate_passed: bool
    gate_reason: str
    forced: bool = False

    @property
    def promote(self) -> bool:
        return self.champion == "challenger"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promote": self.promote}


def promotion_gate(
    feed: FeedConfig, new_metrics: dict[str, float], old_metrics: dict[str, float] | None,
    comparison: dict[str, Any] | None,
) -> tuple[bool, str]:
    """May a model with ``new_metrics`` replace one with ``old_metrics`` (same rows)?"""
    s = feed.lifecycle
    auc = float(new_metrics["roc_auc"])
    if auc < s.min_auc:
        return False, f"ROC-AUC {auc:.3f} on the evaluation set is below lifecycle.min_auc = {s.min_auc}"
    if old_metrics is not None:
        new_ap, old_ap = float(new_metrics["average_precision"]), float(old_metrics["average_precision"])
        if new_ap < old_ap - s.max_regression:
            return False, (
                f"average precision {new_ap:.3f} trails the current champion's {old_ap:.3f} by more than "
                f"lifecycle.max_regression = {s.max_regression}"
            )
        if comparison is not None and comparison["ci_high"] < 0:
            return False, (
                f"worse than the current champion with {comparison['confidence']:.0%} confidence "
                f"(ΔAP {comparison['delta']:+.3f}, CI [{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}])"
            )
    return True, f"ROC-AUC {auc:.3f} >= {s.min_auc}" + (
        "" if old_metrics is None else f"; AP {new_metrics['average_precision']:.3f} vs {old_metrics['average_precision']:.3f}"
    )


def decide(
    feed: FeedConfig,
    evalset: EvaluationSet,
    challenger: str,
    challenger_scores: np.ndarray,
    incumbent_scores: np.ndarray | None,
    *,
    forced: bool = False,
    incumbent_note: str = "",
    random_state: int = 0,
) -> Decision:
    """Keep the incumbent or promote the challenger (see the module docstring)."""
    from pynomaly_core.evaluation.compare import metrics, paired_bootstrap

    new = metrics(evalset.y, challenger_scores)
    if incumbent_scores is None:
        gate_ok, gate_reason = promotion_gate(feed, new, None, None)
        reason = f"no current champion{f' ({incumbent_note})' if incumbent_note else ''}: {challenger} is the first"
        return Decision("challenger" if gate_ok else "incumbent", challenger, reason, None, gate_ok, gate_reason, forced)
    old = metrics(evalset.y, incumbent_scores)
    cmp = paired_bootstrap(
        evalset.y, incumbent_scores, challenger_scores, metric="average_precision",
        n_boot=feed.lifecycle.n_boot, confidence=feed.lifecycle.confidence, random_state=random_state,
    ).to_dict()
    if forced:
        wanted, reason = True, f"promotion of {challenger} requested by run config"
    elif cmp["ci_low"] > 0:
        wanted = True
        reason = (f"{challenger} beats the champion: ΔAP {cmp['delta']:+.3f}, "
                  f"{cmp['confidence']:.0%} CI [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]")
    else:
        wanted = False
        reason = (f"{challenger} is not better with {cmp['confidence']:.0%} confidence "
                  f"(ΔAP {cmp['delta']:+.3f}, CI [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]); champion kept")
    if not wanted:
        return Decision("incumbent", challenger, reason, cmp, True, "no promotion proposed", forced)
    gate_ok, gate_reason = promotion_gate(feed, new, old, cmp)
    if not gate_ok:
        reason += f"; blocked by the promotion gate: {gate_reason}"
    return Decision("challenger" if gate_ok else "incumbent", challenger, reason, cmp, gate_ok, gate_reason, forced)
