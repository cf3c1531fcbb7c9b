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

:func:`judge` turns the measurements and the champion's baseline into a :class:`Verdict` with
a severity: ``"warn"`` for a moderate drop (shown in the UI, scoring goes on), ``"error"``
for a drop past the configured tolerance (the retraining sensor acts on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Severity = Literal["ok", "warn", "error"]


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


@dataclass
class Verdict:
    """Outcome of :func:`judge`: ``severity`` "ok" passes; "warn" and "error" fail the check."""

    severity: Severity
    mode: Literal["labels", "label_free"]
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.severity == "ok"

    def describe(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "within tolerance"


def _worst(a: Severity, b: Severity) -> Severity:
    order = {"ok": 0, "warn": 1, "error": 2}
    return a if order[a] >= order[b] else b


def judge(current: dict[str, float], baseline: dict[str, float], settings: Any) -> Verdict:
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
        return Verdict(severity, "labels", reasons)

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
    return Verdict(severity, "label_free", reasons)
