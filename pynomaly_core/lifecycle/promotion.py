"""The champion decision of one training batch, without Dagster: :func:`promote`.

It re-reads the batch's evaluation rows and scores, picks the challenger (or takes the one
forced by the caller), re-scores the current champion (MLflow alias ``champion``) on the
same rows, :func:`~pynomaly_core.lifecycle.decide`\\ s, moves the aliases (``champion``; the
previous champion becomes ``challenger``, the rollback target, or a rejected challenger
does), records the decision on the challenger's MLflow run and returns the champion now
as a :class:`~pynomaly_core.lifecycle.ChampionRecord`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.lifecycle.candidates import TAG_FITTED_DAYS, TAG_TRAINING_DAYS
from pynomaly_core.lifecycle.decision import Decision, decide
from pynomaly_core.lifecycle.evaluation import (
    EvaluationSet,
    choose_challenger,
    read_evaluation_frame,
)
from pynomaly_core.lifecycle.record import ChampionRecord, LifecycleError
from pynomaly_core.lifecycle.window import parse_days
from pynomaly_core.storage import FrameStore

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.model import AnomalyModel
    from pynomaly_core.tracking import ModelVersionInfo, Tracker

CHAMPION_ALIAS = "champion"
#: the candidate under evaluation: a rejected challenger keeps it until the next decision
CHALLENGER_ALIAS = "challenger"
#: the champion a promotion dethroned (the rollback target)
PREVIOUS_ALIAS = "previous"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` decided and the champion it left in place."""

    record: ChampionRecord
    """The feed's champion after the decision (the ``champion`` asset stores ``record.to_value()``)."""
    decision: Decision
    challenger: dict[str, Any]
    """The challenger's entry in the candidates value (metrics, MLflow version and run)."""
    evaluation: str
    """The kind of evaluation set the decision was made on: labels, feedback or synthetic."""
    registered_model: str
    incumbent_version: str | None = None
    """The champion before this decision (None: there was none, or it could not be loaded)."""
    incumbent_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    """That champion's metrics on the same evaluation set: after a promotion ``record.metrics`` are
    the challenger's, so these are the only figures of the model it replaced."""

    @property
    def comparison(self) -> dict[str, Any]:
        """The paired bootstrap of average precision (empty when there was no champion to compare with)."""
        return self.decision.comparison or {}

    @property
    def gate_passed(self) -> bool:
        """The promotion gate passed and the feed has a champion to score with."""
        return bool(self.decision.gate_passed and self.record.exists)

    @property
    def gate_severity(self) -> str:
        """``warn`` for a first champion promoted on weak evidence (it scores), else ``error`` (it blocks)."""
        return "warn" if self.decision.weak_first and self.record.exists else "error"

    @property
    def gate_description(self) -> str:
        if self.record.exists:
            return self.decision.gate_reason
        return f"no champion for feed {self.record.feed!r}: {self.decision.gate_reason}"


def promote(
    feed: FeedConfig,
    candidates: dict[str, Any],
    frames: FrameStore,
    tracker: Tracker,
    *,
    run_id: str,
    candidate: str | None = None,
    signing_key: bytes | None = None,
    logger: logging.Logger | None = None,
    champion_failed: str | None = None,
) -> Promotion:
    """Decide whether the best candidate of ``candidates`` (the value of
    :meth:`~pynomaly_core.lifecycle.CandidateBatch.to_value`) replaces the feed's champion.

    ``candidate`` forces that detector as the challenger (the promotion gate still blocks it
    when it is worse); ``run_id`` (the orchestrator's run) is recorded with the decision on
    the challenger's MLflow run. A champion that can no longer be loaded cannot defend its
    title: the challenger is judged as the first champion and the reason says why. Raises
    :class:`LifecycleError` when the forced candidate is not a usable one of the batch or
    the batch has no usable candidate. ``champion_failed``: why the retraining sensor launched
    this run (the champion's failed checks); see :func:`~pynomaly_core.lifecycle.decide`.
    """
    log = logger or _LOG
    usable = {r["detector"]: r for r in candidates["candidates"] if r.get("error") is None}
    stored = read_evaluation_frame(frames, feed.name, candidates["batch"])
    evalset = EvaluationSet.from_description(stored.frame, stored.y, candidates["evaluation"])
    challenger = _challenger(feed, candidates["batch"], usable, evalset, candidate)
    chal = usable[challenger]

    incumbent = tracker.get_alias(feed.name, CHAMPION_ALIAS)
    incumbent_model, incumbent_scores, note = None, None, ""
    newer_days: list[str] = []
    if incumbent is not None:
        try:
            incumbent_record = _version_record(feed, incumbent)
            if incumbent_record.fitted_days:
                newer_days = sorted(
                    str(d)
                    for d in chal.get("fitted_days") or ()
                    if str(d) > incumbent_record.fitted_days[-1]
                )
            incumbent_model = incumbent_record.load(signing_key)
            incumbent_scores = np.asarray(
                incumbent_model.decision_function(evalset.frame), dtype=float
            )
        except Exception as exc:  # noqa: BLE001 - an unreadable or tampered champion cannot defend its title
            note = f"current champion version {incumbent.version} could not be loaded: {exc}"
            log.warning(note)
            incumbent_model, incumbent_scores = None, None
    decision = decide(
        feed,
        evalset,
        challenger,
        stored.scores_of(challenger),
        incumbent_scores,
        forced=candidate is not None,
        incumbent_note=note,
        random_state=feed.detector.random_state or 0,
        newer_days=newer_days,
        champion_failed=champion_failed,
    )
    _move_aliases(tracker, feed.name, decision, chal["mlflow_version"], incumbent)
    cmp = decision.comparison or {}
    tracker.log_decision(
        feed.name,
        chal["mlflow_run_id"],
        decision="champion" if decision.promote else "rejected",
        reason=decision.reason,
        metrics={k: cmp.get(k) for k in ("delta", "ci_low", "ci_high", "p_value", "score_a")},
        tags={
            "pynomaly.gate": "passed"
            if decision.gate_passed
            else "weak"
            if decision.weak_first
            else "failed",
            "pynomaly.decided_by_dagster_run": run_id,
        },
    )
    record = _champion_now(
        feed,
        tracker,
        decision,
        chal,
        evalset,
        incumbent_model,
        incumbent_scores,
        signing_key,
        candidates.get("training_days") or (),
    )
    from pynomaly_core.evaluation.compare import metrics

    return Promotion(
        record,
        decision,
        chal,
        evalset.kind,
        tracker.registered_model_name(feed.name),
        incumbent_version=str(incumbent.version)
        if incumbent is not None and incumbent_scores is not None
        else None,
        incumbent_metrics=metrics(evalset.y, incumbent_scores)
        if incumbent_scores is not None
        else {},
    )


def _challenger(
    feed: FeedConfig,
    batch: str,
    usable: dict[str, dict[str, Any]],
    evalset: EvaluationSet,
    forced: str | None,
) -> str:
    """The forced candidate, else the best usable one by :func:`~pynomaly_core.lifecycle.choose_challenger`."""
    if forced is not None:
        if forced not in usable:
            raise LifecycleError(
                f"run config candidate={forced!r} is not a fitted candidate of feed {feed.name!r}'s latest training "
                f"batch {batch} ({sorted(usable)})"
            )
        return forced
    if not usable:
        raise LifecycleError(f"feed {feed.name!r}: training batch {batch} has no usable candidate")
    table = pd.DataFrame(
        {
            n: {**r["metrics"], "fit_seconds": r["fit_seconds"], "error": None}
            for n, r in usable.items()
        }
    ).T
    for col in table.columns:
        if col != "error":
            table[col] = pd.to_numeric(table[col])
    return choose_challenger(table, evalset.kind)


def _version_record(feed: FeedConfig, info: ModelVersionInfo) -> ChampionRecord:
    """The record of a registered version, enough to load it (its tags name the directory and digest)."""
    return ChampionRecord(
        feed=feed.name,
        version=info.version,
        path=info.model_dir,
        detector=info.detector,
        manifest_sha256=info.manifest_sha256,
        mlflow_run_id=info.run_id,
        reason=f"registered version {info.version} has no tag pynomaly.model_dir",
        training_days=parse_days(info.tags.get(TAG_TRAINING_DAYS)),
        fitted_days=parse_days(info.tags.get(TAG_FITTED_DAYS)),
    )


def _move_aliases(
    tracker: Tracker,
    feed: str,
    decision: Decision,
    challenger_version: str,
    incumbent: ModelVersionInfo | None,
) -> None:
    """A promotion moves ``champion``, points ``previous`` at the dethroned champion (the rollback
    target) and clears ``challenger`` (no candidate is under evaluation any more); a rejection
    points ``challenger`` at the rejected candidate."""
    if not decision.promote:
        tracker.set_alias(feed, CHALLENGER_ALIAS, challenger_version)
        return
    tracker.set_alias(feed, CHAMPION_ALIAS, challenger_version)
    tracker.delete_alias(feed, CHALLENGER_ALIAS)
    if incumbent is not None and incumbent.version != challenger_version:
        tracker.set_alias(feed, PREVIOUS_ALIAS, incumbent.version)


def _champion_now(
    feed: FeedConfig,
    tracker: Tracker,
    decision: Decision,
    chal: dict[str, Any],
    evalset: EvaluationSet,
    incumbent_model: AnomalyModel | None,
    incumbent_scores: np.ndarray | None,
    signing_key: bytes | None,
    training_days: Sequence[str],
) -> ChampionRecord:
    """The champion the alias points at after the decision, with the figures it won or kept its title on."""
    current = tracker.get_alias(feed.name, CHAMPION_ALIAS)
    if current is None:
        return ChampionRecord.none(feed.name, decision.reason)
    common: dict[str, Any] = {
        "mlflow_run_id": current.run_id,
        "registered_model": tracker.registered_model_name(feed.name),
        "promoted": decision.promote,
        "reason": decision.reason,
        "evaluation": evalset.kind,
    }
    if decision.promote:
        return ChampionRecord(
            feed=feed.name,
            detector=decision.challenger,
            version=current.version,
            path=chal["model_dir"],
            manifest_sha256=chal["manifest_sha256"],
            threshold=chal["threshold"],
            run_url=chal["run_url"],
            metrics=chal["metrics"],
            training_days=tuple(training_days),
            fitted_days=tuple(chal.get("fitted_days") or ()),
            calibration=chal.get("calibration"),
            **common,
        )
    from pynomaly_core.evaluation.compare import metrics

    kept = _version_record(feed, current)
    # the alias did not move, so the champion is the incumbent loaded above
    model = incumbent_model or kept.load(signing_key)
    return dataclasses.replace(
        kept,
        threshold=float(model.threshold_),
        run_url=tracker.run_url(current.run_id) if current.run_id is not None else None,
        metrics=metrics(evalset.y, incumbent_scores) if incumbent_scores is not None else {},
        **common,
    )
