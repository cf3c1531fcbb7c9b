"""Alert sensors: a failed run (naming its failed blocking checks) and days with critical anomalies.

* ``<feed>__alert_on_failure`` — a run-failure sensor over the feed's jobs (for a feed with
  ``schedules.trigger: automation``, also the runs Dagster's automation launches for it: runs of
  the implicit asset job, recognised by the feed's ``feed`` run tag). A run that failed
  because a blocking check failed (row accounting, schema pass rate, minimum rows, the promotion
  gate) is alerted as ``blocking_check_failed:<job>`` naming the checks; any other failure as
  ``run_failure:<job>`` with the failed steps' errors. The link opens the run.
* ``<feed>__alert_on_critical`` — reads the ``anomaly_scores`` materializations recorded since
  its cursor; scored days with at least ``notifications.alert_min_critical_rows`` critical rows
  send one ``critical_anomalies`` alert naming the days, linking the newest day's asset page.

Each alert goes through :func:`pynomaly_core.alerts.send_alert`: recorded in the warehouse table
``notifications`` and delivered to the channels configured in the environment, at most once per
feed and kind within ``notifications.alert_cooldown_hours``. Both sensors start running
(``notifications.alerts_running``) and, like Dagster's run-status sensors, start from the
present: history before a sensor's first tick is not alerted.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import WarehouseResource
from pynomaly_core.alerts import critical_anomalies_alert, run_failure_alert, send_alert

#: ``anomaly_scores`` metadata: critical rows of the scored day (written by the scoring stage)
CRITICAL_KEY = "severity_critical"
#: the run tag Dagster writes on a partitioned run
PARTITION_TAG = "dagster/partition"
#: materializations read per tick
MAX_RECORDS = 500


def _status(feed_running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if feed_running else dg.DefaultSensorStatus.STOPPED


def failed_blocking_checks(
    instance: dg.DagsterInstance, run_id: str, run_partition: str | None = None
) -> list[dict]:
    """The blocking checks that failed in run ``run_id`` (asset, check, partition, description);
    an evaluation without a partition of its own was of the run's partition."""
    failed = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.asset_check_evaluation
        if evaluation is not None and not evaluation.passed and evaluation.blocking:
            failed.append(
                {
                    "asset": evaluation.asset_key.to_user_string(),
                    "check": evaluation.check_name,
                    "partition": evaluation.partition or run_partition,
                    "description": evaluation.description,
                }
            )
    return failed


def build_failure_alert_sensor(fc: FeedContext, jobs: list) -> dg.SensorDefinition:
    settings = fc.feed.notifications
    # automation runs are runs of Dagster's implicit asset job, not of the feed's jobs: watch every
    # job of the code location and keep the runs tagged with this feed
    automated = fc.feed.schedules.trigger == "automation"

    @dg.run_failure_sensor(
        name=f"{fc.name}__alert_on_failure",
        monitored_jobs=None if automated else jobs,
        default_status=_status(settings.alerts_running and settings.alert_on_run_failure),
        description=f"Alerts when a run of a `{fc.name}` job fails (naming failed blocking checks), at "
        f"most once per job within {settings.alert_cooldown_hours} h; channels from the environment "
        "(docs/operations.md).",
    )
    def alert_on_failure(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
        run = context.dagster_run
        if automated and run.tags.get("feed") != fc.name:
            return
        errors = [
            event.step_failure_data.error.message.strip()
            for event in context.get_step_failure_events()
            if event.step_failure_data.error is not None
        ]
        alert = run_failure_alert(
            fc.name,
            run.job_name,
            run.run_id,
            "; ".join(errors) or context.failure_event.message,
            failed_blocking_checks(context.instance, run.run_id, run.tags.get(PARTITION_TAG)),
        )
        result = send_alert(
            warehouse.engine(),
            alert,
            cooldown=dt.timedelta(hours=settings.alert_cooldown_hours),
            schema=warehouse.schema_name,
        )
        context.log.info(f"{alert.kind} of run {run.run_id}: {result.outcome()}")

    return alert_on_failure


def _latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=1, ascending=False
    ).records
    return records[0].storage_id if records else 0


def build_critical_alert_sensor(fc: FeedContext) -> dg.SensorDefinition:
    settings = fc.feed.notifications
    key = fc.key("anomaly_scores")

    @dg.sensor(
        name=f"{fc.name}__alert_on_critical",
        minimum_interval_seconds=60,
        default_status=_status(settings.alerts_running and settings.alert_min_critical_rows > 0),
        description=f"Alerts when a scored day of `{fc.name}` has at least "
        f"{settings.alert_min_critical_rows} critical anomalies, at most once within "
        f"{settings.alert_cooldown_hours} h; channels from the environment (docs/operations.md).",
    )
    def alert_on_critical(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
        instance = context.instance
        if context.cursor is None:
            context.update_cursor(str(_latest_storage_id(instance, key)))
            return dg.SkipReason("first tick: alerting on days scored from now on")
        if settings.alert_min_critical_rows <= 0:
            return dg.SkipReason("notifications.alert_min_critical_rows is 0: alerts are off")
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=int(context.cursor)),
            limit=MAX_RECORDS,
            ascending=True,
        )
        days: dict[str, int] = {}
        for record in result.records:
            meta = record.asset_materialization.metadata if record.asset_materialization else {}
            critical = meta.get(CRITICAL_KEY)
            value = critical.value if critical is not None else 0
            count = int(value) if isinstance(value, (int, float)) else 0
            if count >= settings.alert_min_critical_rows and record.partition_key:
                days[record.partition_key] = count
        if result.records:
            context.update_cursor(str(result.records[-1].storage_id))
        if not days:
            return dg.SkipReason(
                f"no newly scored day with critical anomalies ({len(result.records)} read)"
            )
        sent = send_alert(
            warehouse.engine(),
            critical_anomalies_alert(fc.name, days, list(key.path)),
            cooldown=dt.timedelta(hours=settings.alert_cooldown_hours),
            schema=warehouse.schema_name,
        )
        return dg.SkipReason(f"critical anomalies on {sorted(days)}: {sent.outcome()}")

    return alert_on_critical


def build_alert_sensors(fc: FeedContext, jobs: list) -> list[dg.SensorDefinition]:
    return [build_failure_alert_sensor(fc, jobs), build_critical_alert_sensor(fc)]
