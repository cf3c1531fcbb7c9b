"""Jobs and schedules per feed.

* ``<feed>__ingest`` — raw and validated for one day;
* ``<feed>__train`` — training window, detector candidates, champion and its monitoring
  reference (unpartitioned);
* ``<feed>__retrain`` — the same assets, launched by the retraining sensor with the reason in
  the run's tags (``pynomaly/reason``) and limited to one run per feed by the run queue's tag
  concurrency limit on ``pynomaly/retrain``;
* ``<feed>__score`` — anomaly scores, explanations, drift report, detector performance and the
  exported table for one day (also what the sensor launches to rescore after a retrain);
* ``<feed>__daily`` — ingest + score; schedule ``<feed>__daily_schedule`` (``schedules.daily_cron``,
  default 01:00 UTC) runs it for the day that ended;
* ``<feed>__maintenance`` — the weekly maintenance assets; schedule
  ``<feed>__maintenance_schedule`` (``schedules.maintenance_cron``, default Monday 03:00 UTC) runs
  it for the week (Monday to Sunday) that ended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import dagster as dg

from pynomaly_assets.feed_context import HOURLY_KEY_FORMAT, FeedContext
from pynomaly_assets.names import RETRAIN_TAG, TRIGGER_TAG

TRAIN_STAGES = ("training_window", "detector_candidates", "champion", "monitoring_reference")
SCORE_STAGES = (
    "anomaly_scores",
    "explanations",
    "drift_report",
    "detector_performance",
    "anomaly_table",
)
MAINTENANCE_STAGES = (
    "data_quality_report",
    "model_health",
    "retention_cleanup",
    "platform_audit",
    "maintenance_report",
)


def job_names(feed: str) -> dict[str, str]:
    return {
        s: f"{feed}__{s}" for s in ("ingest", "train", "retrain", "score", "daily", "maintenance")
    }


def last_complete_day(fc: FeedContext, when: dt.datetime) -> str | None:
    """The daily partition that ended before ``when`` (UTC), if the feed has it."""
    day = when.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    return day.isoformat() if day >= fc.feed.partitioning.start_date else None


def last_complete_hour(fc: FeedContext, when: dt.datetime) -> str | None:
    """The hourly partition (``2026-01-01-13:00``) that ended before ``when`` (UTC), if the feed has it."""
    now = when.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    hour = now - dt.timedelta(hours=1)
    first = fc.feed.partitioning.start_date
    return hour.strftime(HOURLY_KEY_FORMAT) if hour.date() >= first else None


def last_complete_week(fc: FeedContext, when: dt.datetime) -> str | None:
    """The weekly partition (Monday key) of the last Monday-to-Sunday week that ended before ``when``."""
    today = when.astimezone(dt.UTC).date()
    monday = today - dt.timedelta(days=today.weekday())
    start = monday - dt.timedelta(days=7)
    first = fc.weekly_partitions_def.get_first_partition_key()
    return start.isoformat() if first is not None and start.isoformat() >= first else None


def _period_schedule(
    fc: FeedContext,
    kind: str,
    job,
    cron: str,
    running: bool,
    period: Callable[[FeedContext, dt.datetime], str | None],
    none_yet: str,
    description: str,
) -> dg.ScheduleDefinition:
    """Schedule ``<feed>__<kind>_schedule``: runs ``job`` (an asset job; Dagster does not export its
    class) for the partition that ``period`` says ended before the tick, or skips with ``none_yet``
    while none has. The run key ``<feed>-<kind>-<partition>`` runs a partition once however often
    its tick is evaluated."""

    @dg.schedule(
        name=f"{fc.name}__{kind}_schedule",
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if running
        else dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        partition = period(fc, context.scheduled_execution_time)
        if partition is None:
            return dg.SkipReason(none_yet)
        return dg.RunRequest(
            run_key=f"{fc.name}-{kind}-{partition}",
            partition_key=partition,
            tags={TRIGGER_TAG: f"{kind}_schedule"},
        )

    return _schedule


def build_jobs(fc: FeedContext) -> tuple[list, list]:
    k = fc.key
    names = job_names(fc.name)
    ingest = dg.define_asset_job(
        names["ingest"],
        selection=dg.AssetSelection.assets(k("raw"), k("validated")),
        partitions_def=fc.partitions_def,
        tags=fc.tags,
        description=f"Read and validate one day of `{fc.name}`.",
    )
    train = dg.define_asset_job(
        names["train"],
        selection=dg.AssetSelection.assets(*(k(s) for s in TRAIN_STAGES)),
        tags={**fc.tags, RETRAIN_TAG: fc.name},
        description=f"Train `{fc.name}` candidates on the training window, choose the champion "
        "and store its monitoring reference.",
    )
    retrain = dg.define_asset_job(
        names["retrain"],
        selection=dg.AssetSelection.assets(*(k(s) for s in TRAIN_STAGES)),
        tags={**fc.tags, RETRAIN_TAG: fc.name},
        description=f"Retrain `{fc.name}` (launched by `{fc.name}__retrain_sensor` when drift or performance "
        "checks fail): candidates, champion with its promotion gate, reference. The sensor then rescores "
        "the affected days.",
    )
    score = dg.define_asset_job(
        names["score"],
        selection=dg.AssetSelection.assets(*(k(s) for s in SCORE_STAGES)),
        partitions_def=fc.partitions_def,
        tags=fc.tags,
        description=f"Score, explain, check drift and performance, and export one validated day of `{fc.name}`.",
    )
    daily = dg.define_asset_job(
        names["daily"],
        selection=dg.AssetSelection.assets(k("raw"), k("validated"), *(k(s) for s in SCORE_STAGES)),
        partitions_def=fc.partitions_def,
        tags=fc.tags,
        description=f"Ingest, validate, score, explain, check drift and performance, and export one day of "
        f"`{fc.name}`.",
    )
    maintenance = dg.define_asset_job(
        names["maintenance"],
        selection=dg.AssetSelection.assets(*(k(s) for s in MAINTENANCE_STAGES)),
        partitions_def=fc.weekly_partitions_def,
        tags=fc.tags,
        description=f"Weekly maintenance of `{fc.name}`: data quality, model health, retention, report.",
    )
    settings = fc.feed.schedules
    # an hourly feed's daily job runs every hour (schedules.hourly_cron), for the hour that ended
    unit, cron = ("hour", settings.hourly_cron) if fc.hourly else ("day", settings.daily_cron)
    daily_schedule = _period_schedule(
        fc,
        "daily",
        daily,
        cron,
        settings.daily_running,
        last_complete_hour if fc.hourly else last_complete_day,
        f"feed {fc.name!r} starts {fc.feed.partitioning.start_date}; no {unit} has ended yet",
        f"Runs {names['daily']} for the UTC {unit} that ended ({cron}, UTC).",
    )
    maintenance_schedule = _period_schedule(
        fc,
        "maintenance",
        maintenance,
        settings.maintenance_cron,
        settings.maintenance_running,
        last_complete_week,
        f"feed {fc.name!r}: no complete week since {fc.feed.partitioning.start_date}",
        f"Runs {names['maintenance']} for the week (Monday-Sunday, UTC) that ended "
        f"({settings.maintenance_cron}, UTC).",
    )
    return [ingest, train, retrain, score, daily, maintenance], [
        daily_schedule,
        maintenance_schedule,
    ]
