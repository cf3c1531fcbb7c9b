"""Detector performance on a scored partition, with labels or without, and the degradation rule.

With labels (the feed's label column, overridden by reviewer feedback) a partition is judged
by ranking metrics: average precision, ROC-AUC and precision at k. Without enough labels it is
judged by label-free health:

* **canary recall** — synthetic anomalies (:mod:`pynomaly_core.evaluation.synthetic`) are
  injected into a copy of the partition and scored; the share the detector flags is compared
  with the same measurement on the champion's holdout (its baseline);
* **alert rate** — the share of rows flagged against the detector's contamination, with a
  binomial test, so a detector that suddenly flags everything (or nothing) is noticed;
* **score drift** — reported by :mod:`pynomaly_core.drift`, not judged here.

The alert-rate test and the score KS test are computed once per partition, by
:func:`pynomaly_core.drift.drift_report`; :func:`measure_partition` takes them from that
report (:func:`pynomaly_core.drift.health_measurements`) rather than testing again.

:func:`performance_baseline` measures the same things on the champion's holdout once per
champion, and :func:`baseline_champion` names the model a baseline belongs to, so a
partition is judged with the version that scored it.

:func:`judge` turns the measurements and the champion's baseline into a
:class:`PerformanceVerdict` with a severity: ``"warn"`` for a moderate drop (shown in the UI,
scoring goes on), ``"error"`` for a drop past the configured tolerance (the retraining sensor
acts on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.data.config import FeedConfig, MonitoringSettings
    from pynomaly_core.lifecycle import ChampionRecord

Severity = Literal["ok", "warn", "error"]
Mode = Literal["labels", "label_free"]


def labelled_metrics(y: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """Average precision, ROC-AUC and precision at ``k`` (higher score = more anomalous)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, dtype=int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape}) and scores ({s.shape}) differ in shape")
    if len(np.unique(y)) < 2:
        raise ValueError("labelled metrics need both anomalies and normal rows")
    k = max(1, min(int(k), len(s)))
    top = np.argsort(-s, kind="mergesort")[:k]
    return {
        "average_precision": float(average_precision_score(y, s)),
        "roc_auc": float(roc_auc_score(y, s)),
        "precision_at_k": float(y[top].mean()),
        "k": float(k),
    }


def canary_recall(model: Any, frame: pd.DataFrame, numeric: list[str], n: int, *, random_state: int = 0) -> float:
    """Share of ``n`` synthetic anomalies, shaped like ``frame``, that ``model`` flags.

    The canaries are generated relative to ``frame`` itself (median/IQR standardised, see
    :func:`pynomaly_core.evaluation.synthetic.inject_frame`), so the measurement asks whether the
    detector still separates clear outliers from *this* partition's rows.
    """
    from pynomaly_core.evaluation.synthetic import inject_frame

    if len(frame) == 0:
        raise ValueError("cannot inject canaries into an empty partition")
    canaries = inject_frame(frame, numeric, n, random_state=random_state).drop(columns="synthetic_kind")
    scores = np.asarray(model.decision_function(canaries[frame.columns]), dtype=float)
    return float(np.mean(scores > float(model.threshold_)))


def alert_rate_test(flagged: int, rows: int, expected: float) -> dict[str, float]:
    """Observed alert rate, its ratio to ``expected`` and a two-sided binomial p-value."""
    from scipy.stats import binomtest

    if rows <= 0:
        return {"alert_rate": 0.0, "expected_alert_rate": float(expected), "alert_rate_ratio": 0.0,
                "alert_rate_pvalue": 1.0}
    rate = flagged / rows
    return {
        "alert_rate": float(rate),
        "expected_alert_rate": float(expected),
        "alert_rate_ratio": float(rate / expected) if expected > 0 else float("inf"),
        "alert_rate_pvalue": float(binomtest(int(flagged), int(rows), float(expected)).pvalue),
    }


def performance_baseline(
    record: ChampionRecord,
    model: Any,
    training_window: pd.DataFrame,
    holdout: pd.DataFrame,
    holdout_scores: np.ndarray,
    feed: FeedConfig,
    *,
    numeric: list[str],
    random_state: int = 0,
) -> dict[str, Any]:
    """The champion's baseline: what :func:`judge` compares every partition it scores with.

    Average precision and ROC-AUC are the champion's own evaluation metrics, kept only when
    that evaluation was on labels or feedback: metrics on a synthetic set do not compare with
    a day's real labels. Canary recall and the alert rate are measured on the holdout, as
    :func:`measure_partition` later measures them on each partition. The model's path and
    digest are recorded so :func:`baseline_champion` can load exactly this version again, and
    the training days so drift does not judge score drift on days the model was fitted on.
    """
    labelled = record.evaluation in ("labels", "feedback")
    metrics = record.metrics

    def labelled_metric(name: str) -> float | None:
        return float(metrics[name]) if labelled and name in metrics else None

    days = pd.to_datetime(training_window[feed.event_time], utc=True).dt.strftime("%Y-%m-%d")
    return {
        "feed": feed.name, "version": record.version, "detector": record.detector,
        "model_path": record.path, "manifest_sha256": record.manifest_sha256,
        "threshold": float(model.threshold_), "evaluation": record.evaluation,
        "average_precision": labelled_metric("average_precision"),
        "roc_auc": labelled_metric("roc_auc"),
        "canary_recall": canary_recall(model, holdout, numeric, feed.monitoring.canary_rows,
                                       random_state=random_state) if numeric else None,
        "alert_rate": float(np.mean(np.asarray(holdout_scores, dtype=float) > model.threshold_)),
        "expected_alert_rate": float(feed.detector.contamination),
        "holdout_rows": len(holdout), "reference_rows": len(training_window),
        "training_days": sorted(days.unique().tolist()),
    }


def baseline_champion(baseline: Mapping[str, Any]) -> ChampionRecord:
    """The champion a :func:`performance_baseline` was measured for, to load it verified.

    A partition is judged with the model version that scored it, which is not necessarily
    today's champion (a retrain may have promoted another since), so the record comes from
    the baseline stored with that version rather than from the ``champion`` asset.
    """
    from pynomaly_core.lifecycle import ChampionRecord

    return ChampionRecord(
        feed=str(baseline["feed"]), version=str(baseline["version"]), path=baseline["model_path"],
        detector=baseline.get("detector"), manifest_sha256=baseline["manifest_sha256"],
        threshold=baseline.get("threshold"), evaluation=baseline.get("evaluation"),
    )


@dataclass
class Measurements:
    """What :func:`measure_partition` found on one scored partition; ``values`` is what :func:`judge` reads."""

    values: dict[str, float]
    mode: Mode
    labelled_rows: int
    labelled_anomalies: int


def measure_partition(
    model: Any,
    frame: pd.DataFrame,
    scores: np.ndarray,
    labels: pd.Series,
    numeric: list[str],
    settings: MonitoringSettings,
    *,
    score_health: Mapping[str, float],
    random_state: int = 0,
) -> Measurements:
    """Measure a scored partition: ranking metrics when labelled enough, canary recall, alert rate, score KS.

    ``labels`` holds the known labels per row (NaN where unknown; see
    :func:`pynomaly_core.lifecycle.labels_with_feedback`); with at least
    ``settings.min_labelled_anomalies`` anomalies and as many normal rows the mode is
    ``"labels"``. ``score_health`` is the partition's alert-rate and score KS tests, taken
    from its drift report (:func:`pynomaly_core.drift.health_measurements`) so they are
    computed once per partition.
    """
    scores = np.asarray(scores, dtype=float)
    known = labels.notna().to_numpy()
    y = labels[known].astype(int).to_numpy()
    positives, negatives = int(y.sum()), int((y == 0).sum())
    values: dict[str, float] = {}
    mode: Mode = "label_free"
    if positives >= settings.min_labelled_anomalies and negatives >= settings.min_labelled_anomalies:
        values.update(labelled_metrics(y, scores[known], settings.top_k))
        mode = "labels"
    if numeric and len(frame):
        values["canary_recall"] = canary_recall(model, frame.reset_index(drop=True), numeric, settings.canary_rows,
                                                random_state=random_state)
    values.update({k: float(v) for k, v in score_health.items()})
    return Measurements(values, mode, int(known.sum()), positives)


@dataclass
class Verdict:
    """Outcome of a monitoring rule: ``severity`` "ok" passes; "warn" and "error" fail the check.

    Both rules return one (this module's :func:`judge` a :class:`PerformanceVerdict`,
    :func:`pynomaly_core.drift.judge` a :class:`~pynomaly_core.drift.DriftVerdict`), so the
    Dagster checks turn either into a check result the same way.
    """

    severity: Severity
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.severity == "ok"

    def describe(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "within tolerance"


@dataclass
class PerformanceVerdict(Verdict):
    """Outcome of :func:`judge`; ``mode`` says whether labels or label-free health decided."""

    mode: Mode = field(kw_only=True)


def _worst(a: Severity, b: Severity) -> Severity:
    order = {"ok": 0, "warn": 1, "error": 2}
    return a if order[a] >= order[b] else b


def judge(current: dict[str, float], baseline: dict[str, Any], settings: Any) -> PerformanceVerdict:
    """Compare a partition's measurements with the champion's baseline.

    ``settings`` is the feed's ``monitoring`` section. With ``average_precision`` in both
    ``current`` and ``baseline`` the labelled rule applies: a drop of average precision beyond
    ``ap_tolerance_warn`` warns, beyond ``ap_tolerance_error`` is an error. Otherwise the
    label-free rule applies: canary recall more than ``canary_recall_tolerance`` below the
    baseline is an error (half of it warns), and an alert rate above ``alert_rate_max_ratio``
    times the expected one, significant at 0.001, is an error (half the ratio warns).
    """
    severity: Severity = "ok"
    reasons: list[str] = []
    if "average_precision" in current and baseline.get("average_precision") is not None:
        base, now = float(baseline["average_precision"]), float(current["average_precision"])
        drop = base - now
        if drop > settings.ap_tolerance_error:
            severity = "error"
        elif drop > settings.ap_tolerance_warn:
            severity = "warn"
        if severity != "ok":
            reasons.append(
                f"average precision {now:.3f} is {drop:.3f} below the champion's baseline {base:.3f} "
                f"(monitoring.ap_tolerance_warn={settings.ap_tolerance_warn}, "
                f"ap_tolerance_error={settings.ap_tolerance_error})"
            )
        return PerformanceVerdict(severity, reasons, mode="labels")

    if "canary_recall" in current and baseline.get("canary_recall") is not None:
        base, now = float(baseline["canary_recall"]), float(current["canary_recall"])
        drop = base - now
        tol = settings.canary_recall_tolerance
        level: Severity = "error" if drop > tol else "warn" if drop > tol / 2 else "ok"
        if level != "ok":
            reasons.append(
                f"canary recall {now:.3f} is {drop:.3f} below the baseline {base:.3f} "
                f"(monitoring.canary_recall_tolerance={tol})"
            )
        severity = _worst(severity, level)
    if "alert_rate_ratio" in current:
        ratio, p = float(current["alert_rate_ratio"]), float(current.get("alert_rate_pvalue", 0.0))
        limit = settings.alert_rate_max_ratio
        level = "ok"
        if p < 1e-3 and ratio > limit:
            level = "error"
        elif p < 1e-3 and ratio > max(1.0, limit / 2):
            level = "warn"
        if level != "ok":
            reasons.append(
                f"alert rate {current.get('alert_rate', float('nan')):.4f} is {ratio:.1f}x the expected "
                f"{current.get('expected_alert_rate', float('nan')):.4f} (binomial p={p:.2g}; "
                f"monitoring.alert_rate_max_ratio={limit})"
            )
        severity = _worst(severity, level)
    return PerformanceVerdict(severity, reasons, mode="label_free")
