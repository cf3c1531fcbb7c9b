"""The retraining sensor: failed drift or performance checks retrain the feed, then rescore.

Each tick of ``<feed>__retrain_sensor``:

1. **Rescore, without hindsight.** For the newest successful ``<feed>__retrain`` run it has not
   handled yet whose ``champion`` was promoted (and is still champion), it requests
   ``<feed>__score`` for each partition *after* that champion's training window
   (``champion_training_days``) scored by another version — the run's
   ``pynomaly/affected_partitions`` there and days the former champion scored meanwhile — with
   run key ``rescore-<run id>-<day>`` (once each). Days inside or before the window keep their
   first scores (see :mod:`pynomaly_core.retrain`).
2. **Retrain.** It reads the evaluations of ``performance_not_degraded`` (and, with
   ``monitoring.retrain_on_drift``, ``drift_within_bounds``) recorded after its cursor. Failures of
   at least the configured severity (``monitoring.retrain_on``) of partitions scored by the
   *current* champion ask for one ``<feed>__retrain`` run, whose run key is the newest
   evaluation's id, so one failure triggers exactly one retrain. The reason (checks, days,
   descriptions) goes into the run's ``pynomaly/reason`` tag, which the candidates' MLflow runs
   record. While a retrain of the feed is queued or running, or within ``monitoring.cooldown_hours``
   of the last one, the failures stay pending (the cursor does not move) and the tick is skipped
   with the reason.

Failures of model versions that are no longer champion are ignored: the retrain that replaced
them answered them, and the new champion is judged on the days it scores.

The decision is ``pynomaly_core.retrain.plan``, tested on plain data; this module only reads
the instance into its inputs and turns its plan into run requests.
"""

from __future__ import annotations

import time
from typing import Literal, cast

import dagster as dg

from pynomaly_assets.defs.jobs import job_names
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.names import (
    AFFECTED_TAG,
    CHAMPION_TRAINING_DAYS_KEY,
    CHAMPION_VERSION_KEY,
    DECISION_KEY,
    DRIFT_WITHIN_BOUNDS,
    MODEL_VERSION_KEY,
    PARTITION_KEY,
    PERFORMANCE_NOT_DEGRADED,
    REASON_TAG,
    RETRAIN_RUN_TAG,
    RETRAIN_TAG,
    TRIGGER_TAG,
)
from pynomaly_core.lifecycle import day_of, parse_days
from pynomaly_core.retrain import (
    CheckFailure,
    MonitoredCheck,
    RetrainCursor,
    RetrainPlan,
    RetrainRun,
    RunState,
    format_partitions,
    parse_partitions,
    plan,
    rescore_after,
    watched,
)

#: Dagster's run statuses as the retrain policy sees them; any other status is ``STOPPED``
RUN_STATES = {
    dg.DagsterRunStatus.QUEUED: RunState.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED: RunState.QUEUED,
    dg.DagsterRunStatus.STARTING: RunState.RUNNING,
    dg.DagsterRunStatus.STARTED: RunState.RUNNING,
    dg.DagsterRunStatus.SUCCESS: RunState.SUCCEEDED,
}
IN_FLIGHT = [status for status, state in RUN_STATES.items() if state.in_flight]
#: successful retrain runs read a tick for rescoring (fewer than the cursor remembers as handled)
RECENT_SUCCESSES = 20
#: failed evaluations read per check and tick, newest first
MAX_FAILURES = 500
#: ``AssetCheckExecutionRecordStatus.FAILED.value``: the enum lives in a private Dagster module
FAILED = "FAILED"
#: scored partitions after a new champion's training window read per tick (the newest)
MAX_SCORED_AFTER = 100


def champion_version(instance: dg.DagsterInstance, fc: FeedContext) -> str | None:
    """The feed's current champion version, from the latest ``champion`` materialization (None before training)."""
    event = instance.get_latest_materialization_event(fc.key("champion"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(CHAMPION_VERSION_KEY)
    return None if value is None or value.value == "none" else str(value.value)


def _promotions(
    instance: dg.DagsterInstance, fc: FeedContext, runs: list[dg.RunRecord]
) -> dict[str, tuple[str, str | None]]:
    """(champion version, last training day) each of ``runs`` promoted; runs that kept the old
    champion are absent.

    Each training run materializes ``champion`` once, after it started, so the materializations
    since the oldest of them started hold every answer.
    """
    if not runs:
        return {}
    wanted = {r.dagster_run.run_id for r in runs}
    since = min(r.start_time or 0.0 for r in runs)
    records_filter = dg.AssetRecordsFilter(asset_key=fc.key("champion"), after_timestamp=since)
    promoted: dict[str, tuple[str, str | None]] = {}
    page: str | None = None
    while True:
        result = instance.fetch_materializations(records_filter, limit=100, cursor=page)
        for record in result.records:
            meta = record.asset_materialization.metadata if record.asset_materialization else {}
            decision = meta.get(DECISION_KEY)
            if record.run_id in wanted and decision is not None and decision.value == "promoted":
                days = meta.get(CHAMPION_TRAINING_DAYS_KEY)
                trained = (
                    parse_days(str(days.value)) if days is not None and days.value != "none" else ()
                )
                promoted[record.run_id] = (
                    str(meta[CHAMPION_VERSION_KEY].value),
                    trained[-1] if trained else None,
                )
        if not result.has_more:
            return promoted
        page = result.cursor


def _retrain_runs(instance: dg.DagsterInstance, fc: FeedContext, job: str) -> list[RetrainRun]:
    """The feed's retrain runs the policy needs, newest first: the recent successful ones (to
    rescore after), the newest in flight and the newest of all (for the cooldown)."""
    records: dict[int, dg.RunRecord] = {}
    for statuses, limit in (
        ([dg.DagsterRunStatus.SUCCESS], RECENT_SUCCESSES),
        (IN_FLIGHT, 1),
        (None, 1),
    ):
        for record in instance.get_run_records(
            filters=dg.RunsFilter(job_name=job, statuses=statuses), limit=limit
        ):
            records[record.storage_id] = record
    newest_first = [records[k] for k in sorted(records, reverse=True)]
    succeeded = [r for r in newest_first if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    promoted = _promotions(instance, fc, succeeded)
    return [
        RetrainRun(
            run_id=r.dagster_run.run_id,
            state=RUN_STATES.get(r.dagster_run.status, RunState.STOPPED),
            created=r.create_timestamp.timestamp(),
            affected_partitions=parse_partitions(r.dagster_run.tags.get(AFFECTED_TAG)),
            promoted_version=version,
            window_last=window_last,
        )
        for r in newest_first
        for version, window_last in [promoted.get(r.dagster_run.run_id, (None, None))]
    ]


def _scored_after(
    instance: dg.DagsterInstance, fc: FeedContext, day: str | None
) -> dict[str, str | None]:
    """{partition: model version that scored it} of the newest scored partitions after ``day``."""
    if day is None:
        return {}
    key = fc.key("anomaly_scores")
    partitions = sorted(p for p in instance.get_materialized_partitions(key) if day_of(p) > day)
    scored: dict[str, str | None] = {}
    for partition in partitions[-MAX_SCORED_AFTER:]:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        meta = (
            records[0].asset_materialization.metadata
            if records and records[0].asset_materialization
            else {}
        )
        version = meta.get(MODEL_VERSION_KEY)
        scored[partition] = None if version is None else str(version.value)
    return scored


def _failures(
    instance: dg.DagsterInstance,
    check: MonitoredCheck,
    key: dg.AssetCheckKey,
    after: int,
) -> list[CheckFailure]:
    """The failed evaluations of one check recorded after evaluation id ``after`` (among the newest
    ``MAX_FAILURES`` failures).

    Dagster 1.13 has no public API for a check's evaluation history: ``DagsterInstance``'s public
    methods read materializations, observations and runs, ``get_latest_asset_check_evaluation_record``
    returns one evaluation, and ``get_event_records`` is deprecated and counts event-log ids, not the
    check-execution ids that the cursor and the retrain run keys hold. So this reads
    ``instance.event_log_storage.get_asset_check_execution_history`` (not marked public either) and
    compares the status by its value instead of importing the private
    ``AssetCheckExecutionRecordStatus`` to filter on it.
    """
    storage = instance.event_log_storage
    failures: list[CheckFailure] = []
    failed, page = 0, None
    while failed < MAX_FAILURES:
        records = storage.get_asset_check_execution_history(key, limit=MAX_FAILURES, cursor=page)
        for record in records:
            if record.id <= after:
                return failures
            if record.status.value != FAILED:
                continue
            failed += 1
            event = record.event
            evaluation = event.asset_check_evaluation if event is not None else None
            if event is not None and evaluation is not None:
                failures.append(_failure(check, record.id, event.timestamp, evaluation))
            if failed == MAX_FAILURES:
                break
        if len(records) < MAX_FAILURES:
            break
        page = records[-1].id
    return failures


def _failure(
    check: MonitoredCheck,
    evaluation_id: int,
    when: float,
    evaluation: dg.AssetCheckEvaluation,
) -> CheckFailure:
    """A failed evaluation as the policy reads it (the monitoring checks record its partition and model version)."""
    meta = evaluation.metadata
    partition, version = meta.get(PARTITION_KEY), meta.get(MODEL_VERSION_KEY)
    return CheckFailure(
        check=check,
        evaluation_id=evaluation_id,
        evaluated_at=when,
        severity=cast(Literal["warn", "error"], evaluation.severity.value.lower()),
        partition=None if partition is None else str(partition.value),
        model_version=None if version is None else str(version.value),
        description=evaluation.description,
    )


def _run_requests(
    decided: RetrainPlan, fc: FeedContext, names: dict[str, str]
) -> list[dg.RunRequest]:
    """The plan's rescoring runs, then its retrain run."""
    requests = [
        dg.RunRequest(
            job_name=names["score"],
            partition_key=r.partition,
            run_key=r.run_key,
            tags={TRIGGER_TAG: "rescore", RETRAIN_RUN_TAG: r.retrain_run_id, REASON_TAG: r.reason},
        )
        for r in decided.rescores
    ]
    retrain = decided.retrain
    if retrain is not None:
        # the window (training.retrain_window) is resolved by the retrain run's training_window
        requests.append(
            dg.RunRequest(
                job_name=names["retrain"],
                run_key=retrain.run_key,
                tags={
                    RETRAIN_TAG: fc.name,
                    REASON_TAG: retrain.reason,
                    AFFECTED_TAG: format_partitions(retrain.partitions),
                    TRIGGER_TAG: "retrain_sensor",
                },
            )
        )
    return requests


def build_retrain_sensor(fc: FeedContext, jobs: list) -> dg.SensorDefinition:
    settings = fc.feed.monitoring
    names = job_names(fc.name)
    by_name = {j.name: j for j in jobs}
    name = f"{fc.name}__retrain_sensor"
    keys = [
        dg.AssetCheckKey(fc.key("detector_performance"), PERFORMANCE_NOT_DEGRADED),
        dg.AssetCheckKey(fc.key("drift_report"), DRIFT_WITHIN_BOUNDS),
    ]
    checks = {
        MonitoredCheck(k.to_user_string(), k.name, drift=k.name == DRIFT_WITHIN_BOUNDS): k
        for k in keys
    }

    @dg.sensor(
        name=name,
        jobs=[by_name[names["retrain"]], by_name[names["score"]]],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING
        if settings.sensor_running
        else dg.DefaultSensorStatus.STOPPED,
        description=f"Retrains `{fc.name}` when performance_not_degraded (or drift_within_bounds) fails with "
        f"severity {settings.retrain_on} or worse, at most once per {settings.cooldown_hours} h, then rescores "
        "the days after the new champion's training window that another version scored (no hindsight).",
    )
    def retrain_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        cursor = RetrainCursor.from_json(context.cursor)
        failures = [
            failure
            for check in watched(checks, settings)
            for failure in _failures(instance, check, checks[check], cursor.seen.get(check.key, 0))
        ]
        runs = _retrain_runs(instance, fc, names["retrain"])
        decided = plan(
            failures,
            runs,
            time.time(),
            settings,
            feed=fc.name,
            sensor=name,
            checks=list(checks),
            champion_version=champion_version(instance, fc),
            cursor=cursor,
            scored=_scored_after(instance, fc, rescore_after(runs, cursor)),
        )
        context.update_cursor(decided.cursor.to_json())
        if decided.skip_reason is not None:
            return dg.SkipReason(decided.skip_reason)
        return dg.SensorResult(run_requests=_run_requests(decided, fc, names))

    return retrain_sensor
