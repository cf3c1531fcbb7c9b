"""The champion decision: does the challenger replace the champion, and may it?

:func:`decide` compares the challenger with the current champion on the *same* rows with a
stratified paired bootstrap of average precision; :func:`promotion_gate` then blocks any
promotion that is too weak or worse than the champion (see :mod:`pynomaly_core.lifecycle`).

With no champion to defend (the feed's first training, or a champion that cannot be loaded)
the best candidate is promoted whatever its evidence: a feed with a weak model scores and says
so, a feed without one never scores. A first champion below ``lifecycle.min_auc`` is then a
gate failure of severity ``warn`` (:attr:`Decision.gate_severity`) with the numbers, which
does not stop scoring; against an existing champion the gate blocks as an ``error``.

**Indistinguishable evidence, newer data.** A challenger that is not better with confidence
keeps the champion (no churn on noise), with one exception: the evaluation set cannot tell the
two apart at all (their average precision is equal in every bootstrap resample: ΔAP 0, CI
[0, 0]) *and* the challenger's registered model has been fitted on days after the last day the
champion was fitted on (``newer_days``). Then nothing speaks for the champion and its window is
the staler one: the challenger is promoted and the reason names the newer days. It happens when
a retrain's evaluated candidate is the champion's own configuration fitted on the champion's own
days (the window minus the holdout day is the champion's window) while the registered model is
the refit on the whole window (``lifecycle.refit_on_window``): measured on NAB
``ec2_cpu_utilization_5f5533``, the retrain after the day of a level drop tied the champion
exactly and the stale champion flagged 160 normal rows the next day. The ROC-AUC floor does not
block such a challenger either: on the same rows it is exactly as strong as the champion.

**A champion that failed its checks** (``champion_failed``: the retraining sensor launched
this retrain because the champion failed its drift or performance checks on days after its
window; ``lifecycle.replace_failing_champion``, on by default). The evaluation set is one held-out
day; the failed checks are evidence against the champion on the days it scored, which that day
cannot show. So a challenger that is *at par* (not worse with confidence: the ΔAP interval
reaches above zero) and whose registered model was fitted on newer days replaces it, and the
promotion gate still applies. Measured on NAB ``ec2_cpu_utilization_5f5533``: after a level drop,
the retrain after the drop's first whole day was at par (ΔAP +0.001, CI [−0.001, +0.003]) and
the champion kept flagged 40 normal rows the next day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.lifecycle.evaluation import EvaluationSet


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
    gate_severity: Literal["error", "warn"] = "error"
    """How a failed gate counts: ``error`` blocks the promotion (and scoring in the run);
    ``warn`` is a first champion promoted on weak evidence."""

    @property
    def weak_first(self) -> bool:
        """A first champion promoted although it failed the gate."""
        return self.promote and not self.gate_passed and self.gate_severity == "warn"

    @property
    def promote(self) -> bool:
        return self.champion == "challenger"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promote": self.promote}


def promotion_gate(
    feed: FeedConfig,
    new_metrics: dict[str, float],
    old_metrics: dict[str, float] | None,
    comparison: dict[str, Any] | None,
    *,
    failing_champion: bool = False,
) -> tuple[bool, str]:
    """May a model with ``new_metrics`` replace one with ``old_metrics`` (same rows)?

    ``failing_champion``: the challenger was proposed because the champion failed its checks
    and the challenger is at par (see :func:`decide`); below the floor it then passes when the
    champion's ROC-AUC is lower still, without having to beat it with confidence.

    ``lifecycle.min_auc`` keeps weak models from scoring, but not at the price of a weaker one: a
    challenger below it that beats a champion below it too (a higher ROC-AUC, and average precision
    better with confidence: ``comparison["ci_low"] > 0``) passes, and the reason says both are weak.
    Refusing it would keep scoring with the model the same rows show to be worse (measured on NAB
    ``ec2_cpu_utilization_5f5533``: after a level drop the retrain that had learnt it was refused
    for a label-free ROC-AUC under the floor, and the old champion flagged 190 normal rows a day)."""
    s = feed.lifecycle
    auc = float(new_metrics["roc_auc"])
    weak_note = ""
    if auc < s.min_auc:
        old_auc = float(old_metrics["roc_auc"]) if old_metrics is not None else None
        if old_auc is not None and comparison is not None and indistinguishable(comparison):
            weak_note = (
                f"ROC-AUC {auc:.3f} is below lifecycle.min_auc = {s.min_auc}, as is the champion's "
                f"({old_auc:.3f}): the evaluation set cannot tell them apart; "
            )
        elif (
            old_auc is None
            or comparison is None
            or not ((comparison["ci_low"] > 0 or failing_champion) and old_auc < auc)
        ):
            return (
                False,
                f"ROC-AUC {auc:.3f} on the evaluation set is below lifecycle.min_auc = {s.min_auc}",
            )
        else:
            weak_note = (
                f"ROC-AUC {auc:.3f} is below lifecycle.min_auc = {s.min_auc}, but the champion's is lower "
                f"({old_auc:.3f}) and the challenger "
                + (
                    f"beats it with {comparison['confidence']:.0%} confidence"
                    if comparison["ci_low"] > 0
                    else "is at par on average precision while the champion failed its checks"
                )
                + ": the better of two weak models scores; "
            )
    if old_metrics is not None:
        new_ap, old_ap = (
            float(new_metrics["average_precision"]),
            float(old_metrics["average_precision"]),
        )
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
    passed = weak_note or f"ROC-AUC {auc:.3f} >= {s.min_auc}; "
    return True, passed.removesuffix("; ") + (
        ""
        if old_metrics is None
        else f"; AP {new_metrics['average_precision']:.3f} vs {old_metrics['average_precision']:.3f}"
    )


def indistinguishable(comparison: dict[str, Any]) -> bool:
    """The paired bootstrap found no difference at all: ΔAP 0 with the interval [0, 0]."""
    return all(float(comparison[k]) == 0.0 for k in ("delta", "ci_low", "ci_high"))


def _newer(days: Sequence[str]) -> str:
    """``1 newer day(s) (2026-02-25)`` or ``3 newer day(s) (2026-02-23..2026-02-25)``."""
    ordered = sorted(days)
    span = ordered[0] if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]}"
    return f"{len(ordered)} newer day(s) ({span})"


def _described(evalset: EvaluationSet) -> str:
    """``288 holdout rows + 500 synthetic anomalies`` or ``1440 rows, 17 anomalies``."""
    if evalset.kind == "synthetic":
        return f"{evalset.n_holdout} holdout rows + {evalset.n_synthetic} synthetic anomalies"
    return f"{len(evalset.y)} rows, {evalset.n_positive} anomalies"


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
    newer_days: Sequence[str] = (),
    champion_failed: str | None = None,
) -> Decision:
    """Keep the incumbent or promote the challenger (see the module docstring).

    ``newer_days``: the UTC days the challenger's registered model was fitted on that lie after
    the last day the incumbent was fitted on (empty when none or unknown). ``champion_failed``:
    why the retraining sensor launched this retrain (the champion's failed checks), None when
    it did not."""
    from pynomaly_core.evaluation.compare import metrics, paired_bootstrap

    new = metrics(evalset.y, challenger_scores)
    if incumbent_scores is None:
        gate_ok, gate_reason = promotion_gate(feed, new, None, None)
        reason = f"no current champion{f' ({incumbent_note})' if incumbent_note else ''}: {challenger} is the first"
        if gate_ok:
            return Decision("challenger", challenger, reason, None, True, gate_reason, forced)
        weak = (
            f"first champion promoted on weak evidence: ROC-AUC {new['roc_auc']:.3f} < lifecycle.min_auc "
            f"{feed.lifecycle.min_auc} (average precision {new['average_precision']:.3f}) on the {evalset.kind} "
            f"evaluation set ({_described(evalset)}) of feed {feed.name!r}; with no champion to keep, the best "
            "candidate scores the feed rather than none, and every later promotion must pass the gate"
        )
        return Decision(
            "challenger",
            challenger,
            f"{reason}, on weak evidence",
            None,
            False,
            weak,
            forced,
            gate_severity="warn",
        )
    old = metrics(evalset.y, incumbent_scores)
    cmp = paired_bootstrap(
        evalset.y,
        incumbent_scores,
        challenger_scores,
        metric="average_precision",
        n_boot=feed.lifecycle.n_boot,
        confidence=feed.lifecycle.confidence,
        random_state=random_state,
    ).to_dict()
    at_par_failing = False
    if forced:
        wanted, reason = True, f"promotion of {challenger} requested by run config"
    elif cmp["ci_low"] > 0:
        wanted = True
        reason = (
            f"{challenger} beats the champion: ΔAP {cmp['delta']:+.3f}, "
            f"{cmp['confidence']:.0%} CI [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]"
        )
    elif newer_days and indistinguishable(cmp):
        wanted = True
        reason = (
            f"{challenger} is indistinguishable from the champion on the evaluation set "
            f"(ΔAP {cmp['delta']:+.3f}, CI [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]) and was fitted on "
            f"{_newer(newer_days)} than the champion: the fresher model replaces it"
        )
    elif (
        newer_days
        and champion_failed
        and feed.lifecycle.replace_failing_champion
        and cmp["ci_high"] > 0
    ):
        wanted = at_par_failing = True
        reason = (
            f"{challenger} is at par with the champion (ΔAP {cmp['delta']:+.3f}, {cmp['confidence']:.0%} CI "
            f"[{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]), was fitted on {_newer(newer_days)}, "
            f"and the champion failed its checks ({champion_failed[:200]}): "
            "lifecycle.replace_failing_champion promotes it"
        )
    else:
        wanted = False
        reason = (
            f"{challenger} is not better with {cmp['confidence']:.0%} confidence "
            f"(ΔAP {cmp['delta']:+.3f}, CI [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]); champion kept"
        )
    if not wanted:
        return Decision("incumbent", challenger, reason, cmp, True, "no promotion proposed", forced)
    gate_ok, gate_reason = promotion_gate(feed, new, old, cmp, failing_champion=at_par_failing)
    if not gate_ok:
        reason += f"; blocked by the promotion gate: {gate_reason}"
    return Decision(
        "challenger" if gate_ok else "incumbent",
        challenger,
        reason,
        cmp,
        gate_ok,
        gate_reason,
        forced,
    )
