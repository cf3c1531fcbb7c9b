"""The retraining sensor: failed drift or performance checks retrain the feed, then rescore.

Each tick of ``<feed>__retrain_sensor``:

1. **Rescore.** For every successful ``<feed>__retrain`` run it has not handled yet whose
   ``champion`` was promoted, it requests ``<feed>__score`` for each partition named in the run's
   ``pynomaly/affected_partitions`` tag (run key ``rescore-<run id>-<day>``: once each).
2. **Retrain.** It reads the evaluations of ``performance_not_degraded`` (and, with
   ``monitoring.retrain_on_drift``, ``drift_within_bounds``) recorded after its cursor. Failures of
   at least the configured severity (``monitoring.retrain_on``) of partitions scored by the
   *current* champion ask for one ``<feed>__retrain`` run, whose run key is the newest
   evaluation's id, so one failure triggers exactly one retrain. The reason (checks, days,
   descriptions) goes into the run's ``pynomaly/reason`` tag, which the candidates' MLflow runs
   record. While a retrain of the feed is queued or running, or within ``monitoring.cooldown_hours``
   of the last one, the failures stay pending (the cursor does not move) and the tick is skipped
   with the reason.

Failures of model versions that are no longer champion are ignored: rescoring with the new
champion produces new evaluations that speak for themselves.
"""

from __future__ import annotations

import json
import time

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from pynomaly_assets.defs.jobs import RETRAIN_TAG, job_names
from pynomaly_assets.defs.lifecycle import REASON_TAG
from pynomaly_assets.defs.monitoring import DRIFT_WITHIN_BOUNDS, PERFORMANCE_NOT_DEGRADED
from pynomaly_assets.feed_context import FeedContext

AFFECTED_TAG = "pynomaly/affected_partitions"
TRIGGER_TAG = "pynomaly/trigger"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
HANDLED_KEEP = 50


def champion_version(instance: dg.DagsterInstance, fc: FeedContext) -> str | None:
    event = instance.get_latest_materialization_event(fc.key("champion"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("champion_version")
    return None if value is None or value.value == "none" else str(value.value)


def _promoted_in(instance: dg.DagsterInstance, fc: FeedContext, run_id: str) -> str | None:
    """The champion version a run promoted, or None when it kept the old one."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = record.dagster_event.event_specific_data.materialization
        if mat.asset_key == fc.key("champion"):
            meta = mat.metadata
            if meta.get("decision") is not None and meta["decision"].value == "promoted":
                return str(meta["champion_version"].value)
    return None


def _partition_of(evaluation) -> str | None:
    """The day a check evaluation is about (the monitoring checks record it in their metadata)."""
    meta = evaluation.metadata.get("partition")
    return None if meta is None else str(meta.value)


def build_retrain_sensor(fc: FeedContext, jobs: list) -> dg.SensorDefinition:
    settings = fc.feed.monitoring
    names = job_names(fc.name)
    by_name = {j.name: j for j in jobs}
    checks = [dg.AssetCheckKey(fc.key("detector_performance"), PERFORMANCE_NOT_DEGRADED)]
    if settings.retrain_on_drift:
        checks.append(dg.AssetCheckKey(fc.key("drift_report"), DRIFT_WITHIN_BOUNDS))
    severities = {dg.AssetCheckSeverity.ERROR} | (
        {dg.AssetCheckSeverity.WARN} if settings.retrain_on == "warn" else set()
    )

    @dg.sensor(
        name=f"{fc.name}__retrain_sensor",
        jobs=[by_name[names["retrain"]], by_name[names["score"]]],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.sensor_running else dg.DefaultSensorStatus.STOPPED,
        description=f"Retrains `{fc.name}` when performance_not_degraded (or drift_within_bounds) fails with "
        f"severity {settings.retrain_on} or worse, at most once per {settings.cooldown_hours} h, then rescores "
        "the affected days with the new champion.",
    )
    def retrain_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        cursor = json.loads(context.cursor) if context.cursor else {}
        seen: dict[str, int] = cursor.get("seen", {})
        handled: list[str] = cursor.get("handled_retrains", [])
        requests: list[dg.RunRequest] = []
        notes: list[str] = []

        # 1. rescore after each promoted retrain
        finished = instance.get_runs(
            filters=dg.RunsFilter(job_name=names["retrain"], statuses=[dg.DagsterRunStatus.SUCCESS]), limit=20,
        )
        for run in reversed(finished):  # oldest first
            if run.run_id in handled:
                continue
            handled.append(run.run_id)
            version = _promoted_in(instance, fc, run.run_id)
            days = [d for d in run.tags.get(AFFECTED_TAG, "").split(",") if d]
            if version is None:
                notes.append(f"retrain run {run.run_id[:8]} kept the champion; nothing to rescore")
                continue
            for day in days:
                requests.append(dg.RunRequest(
                    job_name=names["score"], partition_key=day, run_key=f"rescore-{run.run_id}-{day}",
                    tags={TRIGGER_TAG: "rescore", "pynomaly/retrain_run": run.run_id,
                          REASON_TAG: f"rescore with champion version {version} after retrain run {run.run_id[:8]}"},
                ))
        handled = handled[-HANDLED_KEEP:]

        # 2. new failed evaluations of the current champion
        champion = champion_version(instance, fc)
        failures = []
        newest = dict(seen)
        for key in checks:
            name = key.to_user_string()
            history = instance.event_log_storage.get_asset_check_execution_history(
                key, limit=500, status={AssetCheckExecutionRecordStatus.FAILED},
            )
            after = int(seen.get(name, 0))
            for record in history:
                if record.id <= after or record.event is None:
                    continue
                newest[name] = max(int(newest.get(name, 0)), record.id)
                evaluation = record.event.dagster_event.event_specific_data
                version = evaluation.metadata.get("model_version")
                if evaluation.severity not in severities:
                    continue
                if champion is not None and version is not None and str(version.value) != champion:
                    continue  # scored by a former champion: rescoring speaks for it
                failures.append((_partition_of(evaluation), record, evaluation))

        new_cursor = {"seen": seen, "handled_retrains": handled}
        if failures:
            in_flight = instance.get_runs(filters=dg.RunsFilter(job_name=names["retrain"], statuses=IN_FLIGHT), limit=1)
            last = instance.get_run_records(filters=dg.RunsFilter(job_name=names["retrain"]), limit=1)
            since = time.time() - last[0].create_timestamp.timestamp() if last else None
            cooldown = settings.cooldown_hours * 3600
            if in_flight:
                notes.append(f"{len(failures)} failed check(s) pending: retrain run {in_flight[0].run_id[:8]} is "
                             f"{in_flight[0].status.value.lower()}")
            elif since is not None and since < cooldown:
                notes.append(f"{len(failures)} failed check(s) pending: last retrain {since / 3600:.1f} h ago, "
                             f"monitoring.cooldown_hours={settings.cooldown_hours}")
            else:
                days = sorted({day for day, _, _ in failures if day})
                top = max(r.id for _, r, _ in failures)
                details = sorted({f"{e.check_name} {e.severity.value.lower()}: {e.description or ''}"
                                  for _, _, e in failures})
                reason = (f"sensor {fc.name}__retrain_sensor: {len(failures)} failed check(s) of champion "
                          f"{champion} on {', '.join(days)} -- " + " | ".join(details))
                config: dict = {}
                if settings.retrain_window_days is not None:
                    config = {"ops": {f"{fc.name}__training_window": {
                        "config": {"window_days": settings.retrain_window_days}}}}
                requests.append(dg.RunRequest(
                    job_name=names["retrain"], run_key=f"{fc.name}-retrain-{top}", run_config=config,
                    tags={RETRAIN_TAG: fc.name, REASON_TAG: reason[:4000], AFFECTED_TAG: ",".join(days),
                          TRIGGER_TAG: "retrain_sensor"},
                ))
                new_cursor["seen"] = newest
        else:
            new_cursor["seen"] = newest
        context.update_cursor(json.dumps(new_cursor, sort_keys=True))
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SkipReason("; ".join(notes) if notes else
                             f"no new failed {', '.join(k.name for k in checks)} evaluation for champion {champion}")

    return retrain_sensor
