"""Detector performance on a scored partition, with labels or without, and the degradation rule.

With labels (the feed's label column, overridden by reviewer feedback) a partition is judged
by ranking metrics: average precision, ROC-AUC and precision at k. Without enough labels it is
judged by label-free health:

* **canary recall** — synthetic anomalies are injected into a copy of the partition and scored;
  the share the detector flags is compared with the same measurement on the champion's holdout
  (its baseline) or, with a normal-day profile, with its spread over the reference days.
  :class:`Canaries` says which recipe: *tabular* canaries (:mod:`pynomaly_core.evaluation.synthetic`,
  new rows with unusual feature combinations) or *series* canaries
  (:func:`pynomaly_core.evaluation.series_synthetic.inject_series`: spikes, level shifts,
  variance changes, stuck values, values at the wrong time of day, injected into the day's own
  series). Tabular recipes degenerate in one dimension (a "dependency" or "local" outlier needs
  several features), and a sensor's faults are faults of its sequence, so ``monitoring.canaries:
  auto`` uses series canaries for a feed with an ``entity`` or ``derived`` section or a single
  numeric feature;
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
acts on it). Without labels, when the champion's reference carries a normal-day profile
(:mod:`pynomaly_core.drift.normal`), the canary recall and the alert rate are judged against
how they vary over the feed's normal reference days instead of the fixed tolerances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.data.config import FeedConfig
    from pynomaly_core.data.settings import MonitoringSettings
    from pynomaly_core.drift.normal import NormalRanges
    from pynomaly_core.lifecycle import ChampionRecord

Severity = Literal["ok", "warn", "error"]
Mode = Literal["labels", "label_free"]
CanaryKind = Literal["series", "tabular"]
Rule = Literal["normal_days", "fixed"]

#: mean rows one series canary event touches (a spike 1, the four other kinds 6-24)
SERIES_ROWS_PER_EVENT = 12
#: at most this share of a copy's rows is injected, so the canaries stay rare in their series
SERIES_MAX_SHARE = 0.2
#: independent injected copies of a small day, to reach ``canary_rows`` without crowding one copy
SERIES_MAX_COPIES = 10
#: a larger day gets its canaries in a contiguous stretch of this many rows (bounded scoring cost)
SERIES_MAX_ROWS = 20_000


def labelled_metrics(y: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """Average precision, ROC-AUC and ``precision_at_<k>`` (higher score = more anomalous).

    The key names the requested ``k`` (e.g. ``precision_at_100``) so it cannot be confused with the
    candidates' ``precision_at_n_true``; ``k`` holds the rows actually ranked (fewer on a small day).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, dtype=int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape}) and scores ({s.shape}) differ in shape")
    if len(np.unique(y)) < 2:
        raise ValueError("labelled metrics need both anomalies and normal rows")
    requested = int(k)
    k = max(1, min(requested, len(s)))
    top = np.argsort(-s, kind="mergesort")[:k]
    return {
        "average_precision": float(average_precision_score(y, s)),
        "roc_auc": float(roc_auc_score(y, s)),
        f"precision_at_{requested}": float(y[top].mean()),
        "k": float(k),
    }


def canary_recall(
    model: Any, frame: pd.DataFrame, numeric: list[str], n: int, *, random_state: int = 0
) -> float:
    """Share of ``n`` synthetic anomalies, shaped like ``frame``, that ``model`` flags.

    The canaries are generated relative to ``frame`` itself (median/IQR standardised, see
    :func:`pynomaly_core.evaluation.synthetic.inject_frame`), so the measurement asks whether the
    detector still separates clear outliers from *this* partition's rows.
    """
    from pynomaly_core.evaluation.synthetic import inject_frame

    if len(frame) == 0:
        raise ValueError("cannot inject canaries into an empty partition")
    canaries = inject_frame(frame, numeric, n, random_state=random_state).drop(
        columns="synthetic_kind"
    )
    scores = np.asarray(model.decision_function(canaries[frame.columns]), dtype=float)
    return float(np.mean(scores > float(model.threshold_)))


def series_canary_recall(
    model: Any,
    frame: pd.DataFrame,
    *,
    event_time: str,
    columns: list[str],
    n: int,
    entity: str | None = None,
    random_state: int = 0,
) -> float:
    """Share of the rows touched by series canaries (about ``n`` rows) that ``model`` flags.

    The anomalies are injected into the *raw feature columns* of a copy of ``frame`` (the day's
    own series, per ``entity``), and the whole modified copy goes through the model's scoring
    call, so a model that derives features from the sequence sees them in their context. A small
    day gets several independent copies (at most :data:`SERIES_MAX_SHARE` of a copy injected); a
    large one a contiguous stretch of :data:`SERIES_MAX_ROWS` rows. NaN when no event fits.
    Once the model derives features itself, the copy must be preceded by the day's warm-up
    history (unmodified, and left out of the recall) so the first rows' lags see the previous day.
    """
    from pynomaly_core.evaluation.series_synthetic import KINDS, inject_series

    if len(frame) == 0:
        raise ValueError("cannot inject canaries into an empty partition")
    rng = np.random.default_rng(random_state)
    frame = frame.reset_index(drop=True)
    if len(frame) > SERIES_MAX_ROWS:
        order = np.argsort(pd.to_datetime(frame[event_time], utc=True).to_numpy(), kind="stable")
        first = int(rng.integers(0, len(frame) - SERIES_MAX_ROWS + 1))
        frame = frame.iloc[np.sort(order[first : first + SERIES_MAX_ROWS])].reset_index(drop=True)
    events = max(len(KINDS), int(np.ceil(n / SERIES_ROWS_PER_EVENT)))
    per_copy = max(1, int(SERIES_MAX_SHARE * len(frame) / SERIES_ROWS_PER_EVENT))
    copies = min(SERIES_MAX_COPIES, int(np.ceil(events / per_copy)))
    hits: list[np.ndarray] = []
    for copy in range(copies):
        kinds = [
            *KINDS[copy % len(KINDS) :],
            *KINDS[: copy % len(KINDS)],
        ]  # every kind gets its turn
        injected = inject_series(
            frame,
            event_time=event_time,
            columns=columns,
            entity=entity,
            n_events=min(per_copy, events),
            kinds=kinds,
            random_state=int(rng.integers(0, 2**31 - 1)),
        )
        if injected.y.any():
            scores = np.asarray(model.decision_function(injected.frame[frame.columns]), dtype=float)
            hits.append(scores[injected.y == 1] > float(model.threshold_))
    flagged = np.concatenate(hits) if hits else np.empty(0, dtype=bool)
    return float(flagged.mean()) if flagged.size else float("nan")


@dataclass(frozen=True)
class Canaries:
    """The canary recipe of a feed: the same on the holdout, the reference days and every scored day."""

    kind: CanaryKind
    numeric: tuple[str, ...]
    n: int
    event_time: str | None = None
    entity: str | None = None

    def recall(self, model: Any, frame: pd.DataFrame, *, random_state: int = 0) -> float:
        if self.kind == "series":
            return series_canary_recall(
                model,
                frame,
                event_time=str(self.event_time),
                columns=list(self.numeric),
                n=self.n,
                entity=self.entity,
                random_state=random_state,
            )
        return canary_recall(model, frame, list(self.numeric), self.n, random_state=random_state)


def canaries_for(feed: FeedConfig, numeric: list[str]) -> Canaries | None:
    """The feed's canaries per ``monitoring.canaries``; None without numeric features (nothing to inject into).

    ``auto`` picks series canaries for a feed with an ``entity`` or ``derived`` section (its rows
    form series) or a single numeric feature (tabular recipes degenerate in one dimension), and
    tabular ones otherwise.
    """
    if not numeric:
        return None
    kind = feed.monitoring.canaries
    if kind == "auto":
        kind = (
            "series"
            if feed.entity is not None or feed.derived is not None or len(numeric) == 1
            else "tabular"
        )
    return Canaries(kind, tuple(numeric), feed.monitoring.canary_rows, feed.event_time, feed.entity)


def alert_rate_test(flagged: int, rows: int, expected: float) -> dict[str, float]:
    """Observed alert rate, its ratio to ``expected`` and a two-sided binomial p-value."""
    from scipy.stats import binomtest

    if rows <= 0:
        return {
            "alert_rate": 0.0,
            "expected_alert_rate": float(expected),
            "alert_rate_ratio": 0.0,
            "alert_rate_pvalue": 1.0,
        }
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
    canaries = canaries_for(feed, numeric)
    recall = (
        canaries.recall(model, holdout, random_state=random_state) if canaries is not None else None
    )
    return {
        "feed": feed.name,
        "version": record.version,
        "detector": record.detector,
        "model_path": record.path,
        "manifest_sha256": record.manifest_sha256,
        "threshold": float(model.threshold_),
        "evaluation": record.evaluation,
        "average_precision": labelled_metric("average_precision"),
        "roc_auc": labelled_metric("roc_auc"),
        "canary_recall": recall if recall is None or np.isfinite(recall) else None,
        "canaries": canaries.kind if canaries is not None else None,
        "alert_rate": float(np.mean(np.asarray(holdout_scores, dtype=float) > model.threshold_)),
        "expected_alert_rate": float(feed.detector.contamination),
        "holdout_rows": len(holdout),
        "reference_rows": len(training_window),
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
        feed=str(baseline["feed"]),
        version=str(baseline["version"]),
        path=baseline["model_path"],
        detector=baseline.get("detector"),
        manifest_sha256=baseline["manifest_sha256"],
        threshold=baseline.get("threshold"),
        evaluation=baseline.get("evaluation"),
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
    canaries: Canaries | None = None,
) -> Measurements:
    """Measure a scored partition: ranking metrics when labelled enough, canary recall, alert rate, score KS.

    ``labels`` holds the known labels per row (NaN where unknown; see
    :func:`pynomaly_core.lifecycle.labels_with_feedback`); with at least
    ``settings.min_labelled_anomalies`` anomalies and as many normal rows the mode is
    ``"labels"``. ``score_health`` is the partition's alert-rate and score KS tests, taken
    from its drift report (:func:`pynomaly_core.drift.health_measurements`) so they are
    computed once per partition. ``canaries`` is the feed's recipe (:func:`canaries_for`); without
    one, tabular canaries over ``numeric``.
    """
    scores = np.asarray(scores, dtype=float)
    known = labels.notna().to_numpy()
    y = labels[known].astype(int).to_numpy()
    positives, negatives = int(y.sum()), int((y == 0).sum())
    values: dict[str, float] = {}
    mode: Mode = "label_free"
    if (
        positives >= settings.min_labelled_anomalies
        and negatives >= settings.min_labelled_anomalies
    ):
        values.update(labelled_metrics(y, scores[known], settings.top_k))
        mode = "labels"
    if canaries is None and numeric:
        canaries = Canaries("tabular", tuple(numeric), settings.canary_rows)
    if canaries is not None and len(frame):
        recall = canaries.recall(model, frame.reset_index(drop=True), random_state=random_state)
        if np.isfinite(recall):  # no canary fitted into the day: nothing measured
            values["canary_recall"] = recall
    values.update({k: float(v) for k, v in score_health.items()})
    return Measurements(values, mode, int(known.sum()), positives)


@dataclass
class Verdict:
    """Outcome of a monitoring rule: ``severity`` "ok" passes; "warn" and "error" fail the check.

    Both rules return one (this module's :func:`judge` a :class:`PerformanceVerdict`,
    :func:`pynomaly_core.drift.judge` a :class:`~pynomaly_core.drift.DriftVerdict`), so the
    Dagster checks turn either into a check result the same way. ``rule`` says what the day was
    held to: ``"normal_days"`` (the feed's normal day-to-day range) or ``"fixed"`` (the fixed
    cut-offs, with ``note`` saying why); ``limits`` are the calibrated limits it was judged
    against (metadata ``<statistic>_limit``); ``notes`` what was measured when nothing failed.
    """

    severity: Severity
    reasons: list[str] = field(default_factory=list)
    rule: Rule = field(default="fixed", kw_only=True)
    note: str | None = field(default=None, kw_only=True)
    limits: dict[str, float] = field(default_factory=dict, kw_only=True)
    notes: list[str] = field(default_factory=list, kw_only=True)

    @property
    def passed(self) -> bool:
        return self.severity == "ok"

    def describe(self) -> str:
        text = (
            "; ".join(self.reasons)
            if self.reasons
            else (
                "within the normal range: " + "; ".join(self.notes)
                if self.notes
                else "within tolerance"
            )
        )
        return text + (
            f" (fixed cut-offs: {self.note})" if self.rule == "fixed" and self.note else ""
        )


@dataclass
class PerformanceVerdict(Verdict):
    """Outcome of :func:`judge`; ``mode`` says whether labels or label-free health decided."""

    mode: Mode = field(kw_only=True)


def _worst(a: Severity, b: Severity) -> Severity:
    order = {"ok": 0, "warn": 1, "error": 2}
    return a if order[a] >= order[b] else b


def judge(
    current: dict[str, float],
    baseline: dict[str, Any],
    settings: Any,
    *,
    normal: NormalRanges | None = None,
) -> PerformanceVerdict:
    """Compare a partition's measurements with the champion's baseline, or with the feed's normal days.

    ``settings`` is the feed's ``monitoring`` section. With ``average_precision`` in both
    ``current`` and ``baseline`` the labelled rule applies: a drop of average precision beyond
    ``ap_tolerance_warn`` warns, beyond ``ap_tolerance_error`` is an error. Otherwise the
    label-free rule applies. With ``normal`` ranges (:meth:`pynomaly_core.drift.NormalDays.ranges`,
    calibrated) canary recall below its normal limit, or an alert rate above its normal limit,
    is an error. Without them (too few reference days, no profile) the fixed rule: canary recall
    more than ``canary_recall_tolerance`` below the baseline is an error (half of it warns), and
    an alert rate above ``alert_rate_max_ratio`` times the expected one, significant at 0.001,
    is an error (half the ratio warns).
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
    if normal is not None and normal.calibrated:
        return _judge_against_normal(current, normal)

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
    return PerformanceVerdict(
        severity,
        reasons,
        mode="label_free",
        rule="fixed",
        note=normal.reason if normal is not None else None,
    )


def _judge_against_normal(current: dict[str, float], normal: NormalRanges) -> PerformanceVerdict:
    """The label-free rule against the feed's normal days: each statistic past its limit is an error."""
    severity: Severity = "ok"
    reasons: list[str] = []
    notes: list[str] = []
    limits: dict[str, float] = {}
    for name in ("canary_recall", "alert_rate"):
        r = normal.get(name)
        if r is None or name not in current:
            continue
        value = float(current[name])
        limits[f"{name}_limit"] = r.limit
        if r.beyond(value):
            severity = "error"
            reasons.append(f"{r.describe(value)} (monitoring.normal_quantile, normal_margin)")
        else:
            notes.append(r.describe(value))
    return PerformanceVerdict(
        severity, reasons, mode="label_free", rule="normal_days", limits=limits, notes=notes
    )
