"""Model lifecycle: ``detector_candidates`` trains a portfolio; ``champion`` picks the model that scores.

``detector_candidates`` splits the training window into training days and a held-out
slice, fits every candidate, evaluates all of them on the same evaluation set (real
labels and feedback when there are enough, else synthetic anomalies injected into the
holdout), saves each as a signed model directory and logs it as an MLflow run and a
registered model version. ``champion`` compares the best candidate with the current
champion (MLflow alias ``champion``) on the same rows with a paired bootstrap and moves
the alias only on evidence; its blocking ``promotion_gate`` check stops a worse model
(a forced promotion included) from reaching scoring. The feed's first champion is promoted
whatever its evidence: a weak one fails the check with severity WARN, which Dagster does not
block on (only failed ERROR checks of a blocking spec raise after the step), so the feed
scores. The rules and both stages live in
:mod:`pynomaly_core.lifecycle` (:func:`~pynomaly_core.lifecycle.train_candidate_batch`,
:func:`~pynomaly_core.lifecycle.promote`); these assets only translate them to Dagster.
``docs/model_lifecycle.md`` explains the rules.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.metadata import rounded
from pynomaly_assets.names import (
    CHAMPION_TRAINING_DAYS_KEY,
    CHAMPION_VERSION_KEY,
    DECISION_KEY,
    PROMOTION_GATE,
    REASON_TAG,
    TRIGGER_TAG,
)
from pynomaly_assets.resources import (
    FrameStoreResource,
    MlflowResource,
    ModelStoreResource,
    WarehouseResource,
)

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.lifecycle import CandidateBatch, Promotion
    from pynomaly_core.tracking import Tracker


class ChampionConfig(dg.Config):
    """Run config of ``champion``."""

    candidate: str | None = None
    """Promote this candidate (detector name) instead of the best one; the promotion gate still
    blocks it when it is worse than the current champion."""


def candidates_metadata(batch: "CandidateBatch", tracker: "Tracker") -> dict[str, Any]:
    """What a ``detector_candidates`` materialization shows: the evaluation table and its figures."""
    table, evalset = batch.table, batch.evalset
    return {
        "candidates": dg.MetadataValue.md(batch.shown_table().to_markdown(floatfmt=".4f")),
        "evaluation": evalset.kind,
        "evaluation_rows": len(evalset.y),
        "evaluation_anomalies": evalset.n_positive,
        "training_rows": batch.training_rows,
        "holdout_rows": batch.holdout_rows,
        "failed_candidates": batch.failed,
        "best_average_precision": float(table["average_precision"].max()),
        "best_roc_auc": float(table["roc_auc"].max()),
        "mlflow": tracker.ui_hint(),
    }


def champion_metadata(promotion: "Promotion", tracker: "Tracker") -> dict[str, Any]:
    """What a ``champion`` materialization shows: the decision, the champion now, the evidence.

    The retraining sensor reads ``decision``, ``champion_version`` and ``champion_training_days``
    (:mod:`pynomaly_assets.names`); a retrain's ``training_window`` reads the training days too.
    """
    from pynomaly_core.lifecycle import format_days

    record, decision, chal, cmp = (
        promotion.record,
        promotion.decision,
        promotion.challenger,
        promotion.comparison,
    )
    registered = promotion.registered_model
    metadata: dict[str, Any] = {
        DECISION_KEY: "promoted" if decision.promote else "kept",
        "reason": decision.reason,
        "champion_detector": record.detector or "none",
        CHAMPION_VERSION_KEY: record.version or "none",
        CHAMPION_TRAINING_DAYS_KEY: format_days(record.training_days) or "none",
        "gate": "passed"
        if decision.gate_passed
        else "weak first champion"
        if decision.weak_first
        else "failed",
        "challenger": decision.challenger,
        "evaluation": promotion.evaluation,
        "registered_model": registered,
        "mlflow_model_uri": f"models:/{registered}/{record.version}" if record.version else "none",
        "mlflow_run_id": record.mlflow_run_id or "none",
        "mlflow": tracker.ui_hint(),
        **{
            f"champion_{k}": float(v)
            for k, v in record.metrics.items()
            if k in ("roc_auc", "average_precision")
        },
        **{f"challenger_{k}": float(chal["metrics"][k]) for k in ("roc_auc", "average_precision")},
        # the champion before this decision on the same evaluation set: after a promotion the
        # champion_* figures are the challenger's, and these keep the dethroned model's
        **{
            f"previous_champion_{k}": float(v)
            for k, v in promotion.incumbent_metrics.items()
            if k in ("roc_auc", "average_precision")
        },
        "previous_champion_version": promotion.incumbent_version or "none",
        # challenger minus previous champion (paired bootstrap of average precision)
        **{
            name: float(cmp[k])
            for k, name in (
                ("delta", "delta_ap"),
                ("ci_low", "delta_ap_ci_low"),
                ("ci_high", "delta_ap_ci_high"),
            )
            if k in cmp
        },
    }
    if record.run_url:
        metadata["mlflow_run"] = dg.MetadataValue.url(record.run_url)
    model_url = tracker.model_version_url(record.feed, record.version) if record.version else None
    if model_url:
        metadata["mlflow_model_version"] = dg.MetadataValue.url(model_url)
    if chal.get("run_url"):
        metadata["challenger_mlflow_run"] = dg.MetadataValue.url(chal["run_url"])
    return metadata


def build_candidates_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    candidates_key = fc.key("detector_candidates")

    @dg.asset(
        key=candidates_key,
        ins={"training_window": dg.AssetIn(key=fc.key("training_window"))},
        group_name=feed.name,
        kinds={"scikitlearn", "mlflow"},
        tags=fc.tags,
        description=f"Candidate detectors for `{feed.name}` fitted on the training window minus its last "
        f"{feed.lifecycle.holdout_days} day(s), evaluated on that holdout, each logged to MLflow as a run "
        "and a registered model version.",
    )
    def detector_candidates(
        context: dg.AssetExecutionContext,
        training_window: pd.DataFrame,
        model_store: ModelStoreResource,
        frame_store: FrameStoreResource,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
    ):
        from pynomaly_core.lifecycle import LifecycleError, train_candidate_batch
        from pynomaly_core.warehouse import read_feedback

        tracker = mlflow.tracker()
        try:
            batch = train_candidate_batch(
                feed,
                training_window,
                frames=frame_store.store(),
                model_dir=lambda version: model_store.model_dir(feed.name, version),
                tracker=tracker,
                run_id=context.run.run_id,
                feedback=lambda start, end: read_feedback(
                    warehouse.engine(),
                    feed=feed.name,
                    start=start,
                    end=end,
                    schema=warehouse.schema_name,
                ),
                reason=context.run.tags.get(REASON_TAG, "manual"),
                tags={"dagster_asset": candidates_key.to_user_string()},
                logger=context.log,
                signing_key=model_store.signing_key(),
            )
        except LifecycleError as exc:
            raise dg.Failure(f"asset {candidates_key.to_user_string()}: {exc}") from exc
        return dg.MaterializeResult(
            value=batch.to_value(), metadata=rounded(candidates_metadata(batch, tracker))
        )

    return detector_candidates


def build_champion_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    champion_key = fc.key("champion")

    @dg.asset(
        key=champion_key,
        ins={"detector_candidates": dg.AssetIn(key=fc.key("detector_candidates"))},
        group_name=feed.name,
        kinds={"mlflow"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                PROMOTION_GATE,
                asset=champion_key,
                blocking=True,
                description="A new champion must reach lifecycle.min_auc and must not be worse than the "
                "current one; a failed gate keeps the current champion and stops scoring in this run (ERROR). "
                "The feed's first champion is promoted whatever its evidence: below lifecycle.min_auc the "
                "check fails as a WARN naming the numbers, and scoring goes on.",
            )
        ],
        description=f"The model that scores `{feed.name}`: the current champion, replaced by the best "
        "candidate only when it is better with statistical confidence (MLflow alias `champion`).",
    )
    def champion(
        context: dg.AssetExecutionContext,
        config: ChampionConfig,
        detector_candidates: dict,
        frame_store: FrameStoreResource,
        mlflow: MlflowResource,
        model_store: ModelStoreResource,
    ):
        from pynomaly_core.lifecycle import LifecycleError, promote

        tracker = mlflow.tracker()
        try:
            promotion = promote(
                feed,
                detector_candidates,
                frame_store.store(),
                tracker,
                run_id=context.run.run_id,
                candidate=config.candidate,
                logger=context.log,
                signing_key=model_store.signing_key(),
                champion_failed=context.run.tags.get(REASON_TAG)
                if context.run.tags.get(TRIGGER_TAG) == "retrain_sensor"
                else None,
            )
        except LifecycleError as exc:
            raise dg.Failure(f"asset {champion_key.to_user_string()}: {exc}") from exc
        decision, record = promotion.decision, promotion.record
        gate = dg.AssetCheckResult(
            check_name=PROMOTION_GATE,
            passed=promotion.gate_passed,
            # WARN: a weak first champion scores (Dagster blocks only on failed ERROR results)
            severity=dg.AssetCheckSeverity.WARN
            if promotion.gate_severity == "warn"
            else dg.AssetCheckSeverity.ERROR,
            description=promotion.gate_description,
            metadata=rounded(
                {
                    "challenger": decision.challenger,
                    "forced": decision.forced,
                    "reason": decision.reason,
                    "challenger_roc_auc": float(promotion.challenger["metrics"]["roc_auc"]),
                    "min_auc": float(feed.lifecycle.min_auc),
                }
            ),
        )
        return dg.MaterializeResult(
            value=record.to_value(),
            metadata=rounded(champion_metadata(promotion, tracker)),
            check_results=[gate],
            data_version=dg.DataVersion(str(record.manifest_sha256 or "none")[:16]),
        )

    return champion


def build_lifecycle_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    return [build_candidates_asset(fc), build_champion_asset(fc)]
