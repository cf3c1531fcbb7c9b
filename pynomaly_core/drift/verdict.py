"""The drift rule: whether a partition's drift fails ``drift_within_bounds``, and how badly.

:func:`judge` is the one place the rule lives (the Dagster check only maps its verdict to a
check result), next to the performance rule :func:`pynomaly_core.evaluation.health.judge`,
whose :class:`~pynomaly_core.evaluation.health.Verdict` it shares.

Two rules, chosen by what the champion's reference knows:

* **against the feed's normal days** (when the reference carries a normal-day profile with
  enough days, :mod:`pynomaly_core.drift.normal`): a feature has drifted when its PSI is past
  the limit its PSI reached on normal reference days; the share of such features is held to
  ``drift_share_warn`` / ``drift_share_error``, and an anomaly-score PSI past its normal limit
  is an error. Evidently's per-column decisions (fixed distance thresholds) are still reported
  but not judged: on a real series whose level moves every day they flag every normal day.
* **fixed cut-offs** (no profile, or fewer reference days than ``monitoring.normal_provisional_days``):
  Evidently's share of drifted features against ``drift_share_warn`` / ``drift_share_error``,
  and the anomaly-score PSI against ``score_psi_error``. The description says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pynomaly_core.evaluation.health import Severity, Verdict

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.data.settings import MonitoringSettings
    from pynomaly_core.drift.normal import NormalRanges
    from pynomaly_core.drift.report import DriftResult


@dataclass
class DriftVerdict(Verdict):
    """Outcome of :func:`judge`, with the numbers it was decided on.

    ``abnormal_share`` / ``abnormal_features``: the share and names of features past their
    normal PSI limit (None under the fixed rule).
    """

    drift_share: float = field(kw_only=True)
    score_psi: float = field(kw_only=True)
    in_training_window: bool = field(default=False, kw_only=True)
    abnormal_share: float | None = field(default=None, kw_only=True)
    abnormal_features: list[str] = field(default_factory=list, kw_only=True)

    def describe(self) -> str:
        if self.reasons:
            text = "; ".join(self.reasons)
        elif self.rule == "normal_days":
            text = "within the normal day-to-day range: " + "; ".join(self.notes)
        else:
            text = f"{self.drift_share:.0%} of features drifted, score PSI {self.score_psi:.3f}"
        if self.in_training_window:
            text += " (a training day of this champion: score drift not judged)"
        if self.rule == "fixed" and self.note:
            text += f" (fixed cut-offs: {self.note})"
        return text


def judge(
    result: DriftResult,
    settings: MonitoringSettings,
    *,
    in_training_window: bool,
    normal: NormalRanges | None = None,
) -> DriftVerdict:
    """Judge a partition's drift against the feed's ``monitoring`` settings and, when known, its normal days.

    With calibrated ``normal`` ranges: the share of features whose PSI is past their normal
    limit, at or above ``drift_share_error``, is an error, at or above ``drift_share_warn`` a
    warning; an anomaly-score PSI past its normal limit is an error. Without: Evidently's share
    of drifted features against the same two settings, and a score PSI above
    ``score_psi_error`` is an error. Either way score drift is not judged on the champion's own
    training days (``in_training_window``): the model was fitted on those rows, so its scores
    there are in-sample (lower), not drift.
    """
    if normal is not None and normal.calibrated:
        return _judge_against_normal(result, settings, in_training_window, normal)
    share = float(result.drift_share)
    score_psi = float(result.score_psi)
    severity: Severity = "ok"
    reasons: list[str] = []
    if share >= settings.drift_share_error:
        severity = "error"
        reasons.append(
            f"{share:.0%} of features drifted (monitoring.drift_share_error={settings.drift_share_error})"
        )
    elif share >= settings.drift_share_warn:
        severity = "warn"
        reasons.append(
            f"{share:.0%} of features drifted (monitoring.drift_share_warn={settings.drift_share_warn})"
        )
    if not in_training_window and score_psi > settings.score_psi_error:
        severity = "error"
        reasons.append(
            f"anomaly-score PSI {score_psi:.3f} > monitoring.score_psi_error={settings.score_psi_error}"
        )
    return DriftVerdict(
        severity,
        reasons,
        drift_share=share,
        score_psi=score_psi,
        in_training_window=in_training_window,
        rule="fixed",
        note=normal.reason if normal is not None else None,
    )


def _judge_against_normal(
    result: DriftResult,
    settings: MonitoringSettings,
    in_training_window: bool,
    normal: NormalRanges,
) -> DriftVerdict:
    psi_by_column = dict(
        zip(result.columns["column"], result.columns["psi"].astype(float), strict=True)
    )
    judged, abnormal, columns, limits = [], [], [], {}
    worst: tuple[float, str] | None = None  # the feature closest to (or furthest past) its limit
    for column, value in psi_by_column.items():
        r = normal.get(f"psi:{column}")
        if r is None or not np.isfinite(value):
            continue
        judged.append(column)
        limits[f"psi_{column}_limit"] = r.limit
        if r.beyond(value):
            abnormal.append(r.describe(value))
            columns.append(column)
        if worst is None or value / r.limit > worst[0]:
            worst = (value / r.limit, r.describe(value))
    share = len(abnormal) / len(judged) if judged else 0.0
    severity: Severity = "ok"
    reasons: list[str] = []
    notes: list[str] = []
    if judged:
        counted = f"{len(abnormal)} of {len(judged)} feature(s) past their normal PSI"
        if share >= settings.drift_share_error:
            severity = "error"
            reasons.append(
                f"{counted} ({share:.0%} >= monitoring.drift_share_error={settings.drift_share_error}): "
                + "; ".join(abnormal)
            )
        elif share >= settings.drift_share_warn:
            severity = "warn"
            reasons.append(
                f"{counted} ({share:.0%} >= monitoring.drift_share_warn={settings.drift_share_warn}): "
                + "; ".join(abnormal)
            )
        elif worst is not None:
            notes.append(f"{counted}; nearest: {worst[1]}")
    score_psi = float(result.score_psi)
    r = normal.get("score_psi")
    if r is not None and not in_training_window:
        limits["score_psi_limit"] = r.limit
        if r.beyond(score_psi):
            severity = "error"
            reasons.append(r.describe(score_psi))
        else:
            notes.append(r.describe(score_psi))
    notes.append(f"Evidently drift share {result.drift_share:.0%} (reported, not judged)")
    return DriftVerdict(
        severity,
        reasons,
        drift_share=float(result.drift_share),
        score_psi=score_psi,
        in_training_window=in_training_window,
        rule="normal_days",
        limits=limits,
        notes=notes,
        abnormal_share=share,
        abnormal_features=columns,
    )
