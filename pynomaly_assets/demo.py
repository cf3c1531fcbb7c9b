"""Materialize a feed's whole asset graph over a range of days, in-process, on the local instance.

``python -m pynomaly_assets.demo`` runs the embedded demo feed: it ingests and validates
14 days, trains candidate detectors on the first 7 and picks a champion (logged to MLflow),
scores, explains, checks drift and performance and exports all 14. The drift from
2026-11-12 fails the performance check, so the retraining sensor (evaluated here as the
daemon would) launches one retrain on the champion's 7 days plus the 7 latest, which promotes
a new champion. The drifted days keep their first scores: the new champion has seen them, and
rescoring them would judge the past with hindsight (the demo shows the refusal; run config
``allow_hindsight: true`` on ``anomaly_scores`` overrides it). The next 4 days arrive and the
new champion scores them: they recover. Last, the weekly maintenance runs for the weeks, and
it prints what landed in the warehouse. The runs are recorded in the Dagster instance at
``$DAGSTER_HOME``, so ``dagster dev`` afterwards shows them with their checks and metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field

import dagster as dg


@dataclass
class PipelineReport:
    feed: str
    failed_runs: list[str] = field(default_factory=list)
    runs: int = 0
    seconds: float = 0.0
    sensor_ticks: list[str] = field(default_factory=list)
    #: runs that failed as the story expects (a rescore refused for hindsight), with the reason
    refused: list[str] = field(default_factory=list)


def _days(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def run_feed(
    defs: dg.Definitions,
    feed: str,
    start: dt.date,
    end: dt.date,
    train_end: dt.date,
    instance: dg.DagsterInstance,
    *,
    echo=print,
    monitor: bool = True,
    after_end: dt.date | None = None,
) -> PipelineReport:
    """Ingest ``start..end``, train on the window ending ``train_end``, score ``start..end``; with
    ``monitor``, let the retraining sensor act, show that a day the new champion has seen is not
    rescored, then ingest and score the days after ``end`` up to ``after_end`` with the champion
    the sensor left, and run the weekly maintenance."""
    report = PipelineReport(feed)
    began = time.perf_counter()

    def run(
        job_name: str,
        partition: str | None = None,
        run_config: dict | None = None,
        tags: dict | None = None,
        expect_refusal: bool = False,
    ) -> None:
        job = defs.resolve_job_def(job_name)
        # the full event log goes to the instance (and the UI); the console gets warnings only (an
        # expected refusal's error is printed below, once)
        level = "CRITICAL" if expect_refusal else "WARNING"
        config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}}
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            run_config=config,
            raise_on_error=False,
            tags=tags,
        )
        report.runs += 1
        label = f"{job_name}[{partition}]" if partition else job_name
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            reason = (
                failure.step_failure_data.error.message.strip()
                if failure and failure.step_failure_data.error
                else "see the run in the Dagster UI"
            )
            first_line = (reason.splitlines()[0] if reason else "").removeprefix(
                "dagster._core.definitions.events.Failure: "
            )
            if expect_refusal and "hindsight" in reason:
                report.refused.append(f"{label}: {first_line}")
                echo(f"  refused {label} as expected: {first_line}")
                return
            report.failed_runs.append(label)
            echo(f"  FAILED {label}: {first_line}")
        else:
            echo(f"  ok     {label}")

    def run_request(request: dg.RunRequest) -> None:
        run(
            request.job_name,
            request.partition_key,
            dict(request.run_config or {}),
            dict(request.tags),
        )

    for day in _days(start, end):
        run(f"{feed}__ingest", day)
    run(
        f"{feed}__train",
        run_config={
            "ops": {f"{feed}__training_window": {"config": {"end_date": train_end.isoformat()}}}
        },
    )
    for day in _days(start, end):
        run(f"{feed}__score", day)
    if monitor:
        report.sensor_ticks, cursor = self_heal(
            defs, feed, instance, run_request=run_request, echo=echo
        )
        # no hindsight: the new champion was trained on the drifted days, so they keep their first scores
        run(f"{feed}__score", end.isoformat(), expect_refusal=True)
        later = (
            _days(end + dt.timedelta(days=1), after_end)
            if after_end is not None and after_end > end
            else []
        )
        for day in later:
            run(f"{feed}__ingest", day)
            run(f"{feed}__score", day)
        if later:
            ticks, _ = self_heal(
                defs, feed, instance, run_request=run_request, echo=echo, cursor=cursor
            )
            report.sensor_ticks += ticks
        last = dt.date.fromisoformat(later[-1]) if later else end
        weekly = defs.resolve_job_def(f"{feed}__maintenance").partitions_def
        for week in weekly.get_partition_keys():
            if (
                start.isoformat() <= week <= last.isoformat()
                or week <= start.isoformat() < _week_end(week)
            ):
                run(f"{feed}__maintenance", week)
    report.seconds = time.perf_counter() - began
    return report


def _week_end(week: str) -> str:
    return (dt.date.fromisoformat(week) + dt.timedelta(days=7)).isoformat()


def self_heal(
    defs: dg.Definitions,
    feed: str,
    instance: dg.DagsterInstance,
    *,
    run_request,
    echo=print,
    max_ticks: int = 6,
    cursor: str | None = None,
) -> tuple[list[str], str | None]:
    """Evaluate the retraining sensor as the daemon would and run what it asks for, until it skips.

    ``cursor``: the sensor's cursor from the previous call (None: a fresh one, which reads every
    check evaluation the demo recorded); returns the ticks and the cursor to continue with.
    """
    sensor = defs.resolve_sensor_def(f"{feed}__retrain_sensor")
    ticks = []
    for _ in range(max_ticks):
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as ctx:
            data = sensor.evaluate_tick(ctx)
        cursor = data.cursor
        if not data.run_requests:
            ticks.append(f"skip: {data.skip_message}")
            echo(f"  sensor {sensor.name}: skipped ({data.skip_message})")
            break
        for request in data.run_requests:
            ticks.append(f"{request.job_name}[{request.partition_key or ''}]")
            if request.job_name.endswith("__retrain"):
                echo(
                    f"  sensor {sensor.name}: retrain, because {request.tags['pynomaly/reason'][:160]}..."
                )
            else:
                echo(
                    f"  sensor {sensor.name}: rescore {request.partition_key} "
                    f"({request.tags.get('pynomaly/reason', '')})"
                )
            run_request(request)
    return ticks, cursor


def summarize(feed: str, instance: dg.DagsterInstance | None = None) -> str:
    """The champion, and per-day rows, anomalies, severities and ROC-AUC of ``feed`` in the warehouse."""
    from sqlalchemy import text

    from pynomaly_assets.resources import default_resources

    resources = default_resources()
    warehouse = resources["warehouse"]
    engine = warehouse.engine()
    # the schema as SQL needs it: a mixed-case one ("Anomalies") quoted, else it folds to anomalies
    prefix = (
        f"{engine.dialect.identifier_preparer.quote_schema(warehouse.schema_name)}."
        if warehouse.schema_name
        else ""
    )
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT partition_date, rows, anomalies, low, medium, high, critical "
                f"FROM {prefix}anomaly_daily_summary WHERE feed = :feed ORDER BY partition_date"
            ),
            {"feed": feed},
        ).all()
        top = conn.execute(
            text(
                f"SELECT partition_date, record_key, severity, feature_1, contribution_1, feature_2 "
                f"FROM {prefix}anomaly_top WHERE feed = :feed AND anomaly_rank = 1 ORDER BY partition_date DESC"
            ),
            {"feed": feed},
        ).first()
    lines = []
    if instance is not None:
        lines += _champion_lines(feed, instance)
    auc = _roc_auc_by_day(feed, instance) if instance is not None else {}
    if instance is not None:
        lines += _monitoring_lines(feed, instance)
    lines += [
        f"warehouse {warehouse.resolved_url()} view {prefix}anomaly_daily_summary:",
        "  day         rows  anomalies  low  med high crit  ROC-AUC",
    ]
    for d, n, a, lo, me, hi, cr in rows:
        score = f"{auc[str(d)]:.3f}" if str(d) in auc else "    -"
        lines.append(f"  {d}  {n:5d}  {a:9d} {lo:4d} {me:4d} {hi:4d} {cr:4d}    {score}")
    if top is not None:
        day, key, severity, f1, c1, f2 = top
        lines.append(
            f"top anomaly of {day}: {key} ({severity}), driven by {f1} (SHAP {c1:+.3f}) and {f2}"
        )
    return "\n".join(lines)


def _champion_lines(feed: str, instance: dg.DagsterInstance) -> list[str]:
    event = instance.get_latest_materialization_event(dg.AssetKey([feed, "champion"]))
    candidates = instance.get_latest_materialization_event(
        dg.AssetKey([feed, "detector_candidates"])
    )
    if event is None or event.asset_materialization is None:
        return ["no champion yet"]
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    headline = (
        f"champion: {meta['champion_detector']} (MLflow {meta['registered_model']} version "
        f"{meta['champion_version']}) - {meta['reason']}"
    )
    lines = [headline]
    if candidates is not None and candidates.asset_materialization is not None:
        cmeta = {k: v.value for k, v in candidates.asset_materialization.metadata.items()}
        lines.append(
            f"candidates evaluated on {cmeta['evaluation']} ({cmeta['evaluation_rows']} rows):"
        )
        lines += ["  " + line for line in str(cmeta["candidates"]).splitlines()]
    lines.append(f"MLflow: {meta['mlflow']}")
    return lines


def _monitoring_lines(feed: str, instance: dg.DagsterInstance) -> list[str]:
    """Per day: drift, and the performance check of the first scoring and of the latest (after a rescore)."""
    perf: dict[str, list[dict]] = {}
    records = instance.fetch_materializations(
        dg.AssetKey([feed, "detector_performance"]), limit=1000
    ).records
    for record in reversed(records):  # oldest first
        event = record.event_log_entry.asset_materialization
        if event is not None and event.partition:
            perf.setdefault(event.partition, []).append(
                {k: v.value for k, v in event.metadata.items()}
            )
    drift: dict[str, list[dict]] = {}
    for record in reversed(
        instance.fetch_materializations(dg.AssetKey([feed, "drift_report"]), limit=1000).records
    ):
        event = record.event_log_entry.asset_materialization
        if event is not None and event.partition:
            drift.setdefault(event.partition, []).append(
                {k: v.value for k, v in event.metadata.items()}
            )
    if not perf:
        return []
    lines = [
        "monitoring per day (first scoring -> a later rescoring, if any):",
        "  day        drifted  model     AP  performance  score PSI  alerts/expected",
    ]

    def pair(a, b, fmt: str) -> str:
        left = "-" if a is None else format(a, fmt)
        return left if b is None else f"{left} -> {format(b, fmt)}"

    for day in sorted(perf):
        p0, p1 = perf[day][0], (perf[day][-1] if len(perf[day]) > 1 else None)
        d = drift.get(day, [{}])
        d0, d1 = d[0], (d[-1] if len(d) > 1 else None)
        get = lambda m, k: None if m is None else m.get(k)
        lines.append(
            f"  {day}  {d0.get('drift_share', 0):6.0%}  {pair(p0.get('model_version'), get(p1, 'model_version'), 's'):>7}"
            f"  {pair(p0.get('average_precision'), get(p1, 'average_precision'), '.3f'):>14}"
            f"  {pair(p0.get('verdict'), get(p1, 'verdict'), 's'):>13}"
            f"  {pair(d0.get('score_psi'), get(d1, 'score_psi'), '.2f'):>12}"
            f"  {pair(d0.get('alert_rate_ratio'), get(d1, 'alert_rate_ratio'), '.1f'):>12}"
        )
    report = instance.get_latest_materialization_event(dg.AssetKey([feed, "maintenance_report"]))
    if report is not None and report.asset_materialization is not None:
        meta = {k: v.value for k, v in report.asset_materialization.metadata.items()}
        lines.append(
            f"weekly maintenance report ({report.asset_materialization.partition}): {meta['report_html']}"
            f" - notification: {meta['notification']}"
        )
    return lines


def _roc_auc_by_day(feed: str, instance: dg.DagsterInstance) -> dict[str, float]:
    """The ``roc_auc`` metadata of each ``anomaly_scores`` partition (feeds with labels only)."""
    out: dict[str, float] = {}
    records = instance.fetch_materializations(
        dg.AssetKey([feed, "anomaly_scores"]), limit=1000
    ).records
    for record in reversed(records):  # oldest first, so the latest run of a day wins
        event = record.event_log_entry.asset_materialization
        if event is not None and event.partition and "roc_auc" in event.metadata:
            out[event.partition] = float(event.metadata["roc_auc"].value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", default="demo_telemetry")
    parser.add_argument("--start", default="2026-11-01")
    parser.add_argument(
        "--end", default="2026-11-14", help="last day ingested before the sensor acts"
    )
    parser.add_argument(
        "--after-end",
        default="2026-11-18",
        help="days after --end up to this one are ingested and scored after the sensor acted",
    )
    parser.add_argument("--train-end", default="2026-11-07")
    args = parser.parse_args(argv)

    # the console shows the story; MLflow's progress bars and INFO lines stay out of it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from pynomaly_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    print(f"Dagster instance: {instance.root_directory}")
    report = run_feed(
        defs,
        args.feed,
        dt.date.fromisoformat(args.start),
        dt.date.fromisoformat(args.end),
        dt.date.fromisoformat(args.train_end),
        instance,
        after_end=dt.date.fromisoformat(args.after_end),
    )
    refused = (
        f" ({len(report.refused)} refused as the story expects: no hindsight)"
        if report.refused
        else ""
    )
    print(
        f"{report.runs} runs in {report.seconds:.1f} s; {len(report.failed_runs)} failed{refused}"
    )
    print(summarize(args.feed, instance))
    return 1 if report.failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
