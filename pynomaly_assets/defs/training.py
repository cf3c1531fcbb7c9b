"""Training: ``training_window`` gathers a bounded window of validated days.

The window ends at the latest materialized ``validated`` partition (or ``end_date`` in
the run config); it never reads all partitions. A ``<feed>__train`` run reads the last
``training.window_days`` days. A ``<feed>__retrain`` run (the retraining sensor's, or one
launched by hand) reads the last ``training.retrain_window.reference_days`` days the current
champion was trained on plus the latest ``recent_days`` days
(:func:`pynomaly_core.lifecycle.retrain_window`): the old normal and the change, not only the
latest week. The candidates and the champion trained on it live in
:mod:`pynomaly_assets.defs.lifecycle`.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from pynomaly_assets.defs.jobs import job_names
from pynomaly_assets.defs.lifecycle import build_lifecycle_assets
from pynomaly_assets.defs.validation import (
    AcceptFailedValidation,
    accepted_partitions,
    failed_validations,
    is_accepted,
    record_accepted,
)
from pynomaly_assets.feed_context import FeedContext, key_day, partitions_by_day
from pynomaly_assets.names import CHAMPION_TRAINING_DAYS_KEY
from pynomaly_assets.resources import FrameStoreResource


class TrainingWindowConfig(AcceptFailedValidation):
    """Run config of ``training_window`` (``accept_failed_validation``: days trained on although
    their validation failed a blocking check; without it such days are left out)."""

    end_date: str | None = None
    """Last day of the window (YYYY-MM-DD); default: the latest materialized validated partition."""
    window_days: int | None = None
    """Override of the feed's ``training.window_days`` (in a retrain: of ``training.retrain_window.recent_days``)."""


def champion_training_days(instance: dg.DagsterInstance, fc: FeedContext) -> tuple[str, ...]:
    """The days the feed's current champion was trained on, from its latest materialization (none before one)."""
    from pynomaly_core.lifecycle import parse_days

    event = instance.get_latest_materialization_event(fc.key("champion"))
    if event is None or event.asset_materialization is None:
        return ()
    value = event.asset_materialization.metadata.get(CHAMPION_TRAINING_DAYS_KEY)
    return () if value is None or value.value == "none" else parse_days(str(value.value))


def window_end(
    config: TrainingWindowConfig, materialized: list[str], validated: dg.AssetKey
) -> dt.date:
    """The window's last day: ``end_date`` from the run config, else the latest validated partition."""
    if config.end_date is not None:
        try:
            return dt.date.fromisoformat(config.end_date)
        except ValueError:
            raise dg.Failure(
                f"training_window config end_date={config.end_date!r} is not YYYY-MM-DD"
            ) from None
    if not materialized:
        raise dg.Failure(
            f"asset {validated.to_user_string()} has no materialized partitions yet; "
            "materialize some days of the feed before training"
        )
    return key_day(max(materialized))


def build_training_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    feed = fc.feed
    validated_key = fc.key("validated")
    retrain_job = job_names(feed.name)["retrain"]

    @dg.asset(
        key=fc.key("training_window"),
        deps=[validated_key],
        group_name=feed.name,
        kinds={"parquet"},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"The last `training.window_days` ({feed.training.window_days}) days of validated "
        f"`{feed.name}` rows that the detector is fitted on (sampled down to `training.max_rows`); in a "
        f"`{retrain_job}` run, the champion's last `training.retrain_window.reference_days` training days "
        "plus the latest `recent_days`.",
    )
    def training_window(
        context: dg.AssetExecutionContext,
        config: TrainingWindowConfig,
        frame_store: FrameStoreResource,
    ):
        from pynomaly_core.lifecycle import retrain_window, training_window

        materialized = sorted(context.instance.get_materialized_partitions(validated_key))
        end = window_end(config, materialized, validated_key)
        retrain = context.run.job_name == retrain_job
        if retrain:
            plan = retrain_window(
                feed,
                end,
                champion_training_days(context.instance, fc),
                recent_override=config.window_days,
            )
        else:
            plan = training_window(end, config.window_days or feed.training.window_days)
        have = partitions_by_day(materialized)  # an hourly feed's days hold 24 partitions
        present = [key for d in plan.days for key in have.get(d, [])]
        missing = [d for d in plan.days if d not in have]
        failed = failed_validations(context.instance, validated_key, present)
        accepted_days = accepted_partitions(context, config.accept_failed_validation)
        accepted = {d: f for d, f in failed.items() if is_accepted(d, accepted_days)}
        blocked = {d: f for d, f in failed.items() if d not in accepted}
        for f in blocked.values():
            context.log.warning(
                f"feed {feed.name!r}: {f.describe()}; left out of the training window "
                f"(run config accept_failed_validation: [{f.partition!r}] to train on it anyway)"
            )
        present = [d for d in present if d not in blocked]
        store = frame_store.store()
        frames = [store.read(list(validated_key.path), d) for d in present]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        total = len(frame)
        if total < feed.training.min_rows:
            raise dg.Failure(
                f"feed {feed.name!r}: training window {plan.describe()} has {total} validated rows, "
                f"fewer than training.min_rows = {feed.training.min_rows} "
                f"(materialized days in window: {present or 'none'}; left out because their "
                f"validation failed: {sorted(blocked) or 'none'})"
            )
        cap = feed.training.max_rows
        if cap is not None and total > cap:
            frame = frame.sample(n=cap, random_state=feed.detector.random_state or 0).reset_index(
                drop=True
            )
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "window_start": plan.start,
                "window_end": plan.end,
                "window": plan.describe(),
                "retrain_window": retrain,
                "reference_days": dg.MetadataValue.json(list(plan.reference)),
                "partitions_used": dg.MetadataValue.json(present),
                "partitions_missing": dg.MetadataValue.json(missing),
                "partitions_blocked": dg.MetadataValue.json(
                    {d: sorted(f.checks) for d, f in blocked.items()}
                ),
                **record_accepted(context, accepted),
                "rows_before_sampling": total,
            },
        )

    return [training_window, *build_lifecycle_assets(fc)]
