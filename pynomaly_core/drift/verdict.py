"""The drift rule: whether a partition's drift fails ``drift_within_bounds``, and how badly.

:func:`judge` is the one place the rule lives (the Dagster check only maps its verdict to a
check result), next to the performance rule :func:`pynomaly_core.evaluation.health.judge`,
whose :class:`~pynomaly_core.evaluation.health.Verdict` it shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pynomaly_core.evaluation.health import Severity, Verdict

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.data.config import MonitoringSettings
    from pynomaly_core.drift.report import DriftResult


@dataclass
class DriftVerdict(Verdict):
    """Outcome of :func:`judge`, with the two numbers it was decided on."""

    drift_share: float = field(kw_only=True)
    score_psi: float = field(kw_only=True)
    in_training_window: bool = field(default=False, kw_only=True)

    def describe(self) -> str:
        text = "; ".join(self.reasons) if self.reasons else (
            f"{self.drift_share:.0%} of features drifted, score PSI {self.score_psi:.3f}"
        )
        return text + (" (a training day of this champion: score drift not judged)" if self.in_training_window else "")


def judge(result: DriftResult, settings: MonitoringSettings, *, in_training_window: bool) -> DriftVerdict:
    """Judge a partition's drift against the feed's ``monitoring`` settings.

    A share of drifted features at or above ``drift_share_error`` is an error, at or above
    ``drift_share_warn`` a warning. An anomaly-score PSI above ``score_psi_error`` is an
    error too, except on the champion's own training days (``in_training_window``): the
    model was fitted on those rows, so its scores there are in-sample (lower), not drift.
    """
    share = float(result.drift_share)
    score_psi = float(result.score_psi)
    severity: Severity = "ok"
    reasons: list[str] = []
    if share >= settings.drift_share_error:
        severity = "error"
        reasons.append(f"{share:.0%} of features drifted (monitoring.drift_share_error={settings.drift_share_error})")
    elif share >= settings.drift_share_warn:
        severity = "warn"
        reasons.append(f"{share:.0%} of features drifted (monitoring.drift_share_warn={settings.drift_share_warn})")
    if not in_training_window and score_psi > settings.score_psi_error:
        severity = "error"
        reasons.append(f"anomaly-score PSI {score_psi:.3f} > monitoring.score_psi_error={settings.score_psi_error}")
    return DriftVerdict(severity, reasons, drift_share=share, score_psi=score_psi,
                        in_training_window=in_training_window)
