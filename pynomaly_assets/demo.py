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
it prints what landed in the warehouse. Then the embedded REAL feed (``nab_ec2_cpu``: eight days
of a NAB server's CPU, MIT licence) is ingested, trained on its first five days and scored,
briefly: one line of alerts a day, NAB's labelled window marked (``--real-feed ''`` skips it).
The runs are recorded in the Dagster instance at
``$DAGSTER_HOME``, so ``dagster dev`` afterwards shows them with their checks and metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"


@dataclass(frozen=True)
class CodeLocation:
    """Where the UI finds this code: the workspace's code location (``workspace.yaml``).

    The demo executes its runs in-process (no daemon, no run launcher, the same speed as before);
    Dagster's job pages list a run only when it is labelled with the repository of a loaded code
    location (the hidden ``.dagster/repository`` tag a launched run gets from its remote origin), and
    a sensor's page lists the ticks recorded under the sensor's selector. This records both the
    way a launched run and the daemon would, so ``dagster dev`` shows every demo run on its job
    page, in the Overview timeline, and the retraining sensor's ticks with the runs they launched.
    """

    location_name: str
    repository_name: str = "__repository__"  # the repository Dagster builds from a Definitions

    @classmethod
    def from_workspace(cls, workspace: Path = WORKSPACE) -> CodeLocation:
        import yaml

        try:
            entries = yaml.safe_load(workspace.read_text())["load_from"]
            (target,) = (entry["python_module"] for entry in entries if "python_module" in entry)
            return cls(target["location_name"])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{workspace}: expected one python_module entry with a location_name under "
                f"load_from ({type(exc).__name__}: {exc})"
            ) from exc

    def repository_origin(self):
        from dagster._core.remote_origin import (
            ManagedGrpcPythonEnvCodeLocationOrigin,
            RemoteRepositoryOrigin,
        )
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

        target = LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="pynomaly_assets.definitions",
            working_directory=str(WORKSPACE.parent),
        )
        return RemoteRepositoryOrigin(
            code_location_origin=ManagedGrpcPythonEnvCodeLocationOrigin(
                loadable_target_origin=target, location_name=self.location_name
            ),
            repository_name=self.repository_name,
        )

    def run_tags(self) -> dict[str, str]:
        """The repository label a run launched from this code location carries."""
        from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

        return {REPOSITORY_LABEL_TAG: self.repository_origin().get_label()}

    def start_tick(self, instance: dg.DagsterInstance, sensor: str, cursor: str | None):
        """A sensor tick recorded as the daemon records it (under the sensor's selector id)."""
        from dagster._core.definitions.selector import InstigatorSelector
        from dagster._core.remote_origin import RemoteInstigatorOrigin
        from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus

        selector = InstigatorSelector(
            location_name=self.location_name, repository_name=self.repository_name, name=sensor
        )
        return instance.create_tick(
            TickData(
                instigator_origin_id=RemoteInstigatorOrigin(
                    repository_origin=self.repository_origin(), instigator_name=sensor
                ).get_id(),
                instigator_name=sensor,
                instigator_type=InstigatorType.SENSOR,
                status=TickStatus.STARTED,
                timestamp=time.time(),
                selector_id=selector.get_id(),
                cursor=cursor,
            )
        )


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
    maintenance: bool = True,
) -> PipelineReport:
    """Ingest ``start..end``, train on the window ending ``train_end``, score ``start..end``; with
    ``monitor``, let the retraining sensor act, show that a day the new champion has seen is not
    rescored, then ingest and score the days after ``end`` up to ``after_end`` with the champion
    the sensor left, and run the weekly maintenance."""
    report = PipelineReport(feed)
    began = time.perf_counter()
    location = CodeLocation.from_workspace()

    def run(
        job_name: str,
        partition: str | None = None,
        run_config: dict | None = None,
        tags: dict | None = None,
        expect_refusal: bool = False,
    ) -> str:
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
            tags={**(tags or {}), **location.run_tags()},
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
                return result.run_id
            report.failed_runs.append(label)
            echo(f"  FAILED {label}: {first_line}")
        else:
            echo(f"  ok     {label}")
        return result.run_id

    def run_request(request: dg.RunRequest) -> str:
        from dagster._core.storage.tags import SENSOR_NAME_TAG

        if request.job_name is None:
            raise ValueError(f"run request {request.run_key!r} names no job")
        return run(
            request.job_name,
            request.partition_key,
            dict(request.run_config or {}),
            # the daemon tags a sensor's runs with its name (the run list's "launched by")
            {**request.tags, SENSOR_NAME_TAG: f"{feed}__retrain_sensor"},
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
            defs, feed, instance, run_request=run_request, echo=echo, location=location
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
                defs,
                feed,
                instance,
                run_request=run_request,
                echo=echo,
                cursor=cursor,
                location=location,
            )
            report.sensor_ticks += ticks
        last = dt.date.fromisoformat(later[-1]) if later else end
        weekly = defs.resolve_job_def(f"{feed}__maintenance").partitions_def
        for week in weekly.get_partition_keys() if maintenance and weekly is not None else []:
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
    location: CodeLocation | None = None,
) -> tuple[list[str], str | None]:
    """Evaluate the retraining sensor as the daemon would and run what it asks for, until it skips.

    ``cursor``: the sensor's cursor from the previous call (None: a fresh one, which reads every
    check evaluation the demo recorded); returns the ticks and the cursor to continue with. With
    ``location`` each evaluation is recorded as a tick of the sensor (skipped, or a success with
    the runs it launched), which the sensor's page in the UI lists.
    """
    from dagster._core.scheduler.instigation import TickStatus

    sensor = defs.resolve_sensor_def(f"{feed}__retrain_sensor")
    ticks = []
    for _ in range(max_ticks):
        tick = location.start_tick(instance, sensor.name, cursor) if location else None
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as ctx:
            data = sensor.evaluate_tick(ctx)
        cursor = data.cursor
        if not data.run_requests:
            ticks.append(f"skip: {data.skip_message}")
            echo(f"  sensor {sensor.name}: skipped ({data.skip_message})")
            if tick is not None:
                instance.update_tick(
                    tick.with_status(TickStatus.SKIPPED)
                    .with_reason(data.skip_message)
                    .with_cursor(cursor)
                )
            break
        run_ids = []
        for request in data.run_requests:
            ticks.append(f"{request.job_name}[{request.partition_key or ''}]")
            if request.job_name is not None and request.job_name.endswith("__retrain"):
                echo(
                    f"  sensor {sensor.name}: retrain, because {request.tags['pynomaly/reason'][:160]}..."
                )
            else:
                echo(
                    f"  sensor {sensor.name}: rescore {request.partition_key} "
                    f"({request.tags.get('pynomaly/reason', '')})"
                )
            run_ids.append(run_request(request))
        if tick is not None:
            for run_id in run_ids:
                tick = tick.with_run_info(run_id=run_id)
            instance.update_tick(
                tick.with_status(TickStatus.SUCCESS)
                .with_run_requests(data.run_requests)
                .with_cursor(cursor)
            )
    return ticks, cursor


def summarize(feed: str, instance: dg.DagsterInstance | None = None) -> str:
    """The champion, and per-day rows, anomalies, severities and ROC-AUC of ``feed`` in the warehouse."""
    with resolved_resources("warehouse") as resources:
        return _summary(feed, resources.warehouse, instance)


@contextmanager
def resolved_resources(*keys: str) -> Iterator[Any]:
    """The code location's resources ``keys`` resolved as Dagster resolves them in a run.

    Why: :func:`default_resources` configures them with ``dg.EnvVar`` (so secrets never land in
    run config), which only Dagster's resource initialization replaces by the variable's value;
    a resource built outside a run would hand the ``EnvVar`` object itself to SQLAlchemy.
    ``dg.build_resources`` runs the same initialization (and the teardown afterwards).
    """
    from pynomaly_assets.resources import default_resources

    available = default_resources()
    with dg.build_resources({key: available[key] for key in keys}) as built:
        yield built


def _summary(feed: str, warehouse: Any, instance: dg.DagsterInstance | None) -> str:
    from sqlalchemy import text

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
                f"SELECT partition_date, rows, anomalies, low, medium, high, critical "  # nosec B608: schema quoted, values bound
                f"FROM {prefix}anomaly_daily_summary WHERE feed = :feed ORDER BY partition_date"
            ),
            {"feed": feed},
        ).all()
        top = conn.execute(
            text(
                f"SELECT partition_date, record_key, severity, feature_1, contribution_1, feature_2 "  # nosec B608: schema quoted, values bound
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
        f"warehouse {engine.url.render_as_string(hide_password=True)} view {prefix}anomaly_daily_summary:",
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
            value = event.metadata["roc_auc"].value
            if isinstance(value, (int, float)):
                out[event.partition] = float(value)
    return out


#: the embedded real feed (pynomaly_assets/feeds/nab_ec2_cpu.yaml): its days, its first training's
#: last day, and NAB's labelled anomaly window (nab_ec2_cpu/SOURCE.md)
REAL_FEED = "nab_ec2_cpu"
REAL_DAYS = (dt.date(2014, 4, 10), dt.date(2014, 4, 17), dt.date(2014, 4, 14))
REAL_WINDOW = ("2014-04-15 07:24", "2014-04-16 11:54")


def run_real_feed(
    defs: dg.Definitions, feed: str, instance: dg.DagsterInstance, *, echo=print
) -> PipelineReport:
    """The real feed, briefly: ingest its eight days, train on the first five, score all eight,
    then one line a day of alerts, the NAB-labelled window marked (the feed itself has no labels)."""
    start, end, train_end = REAL_DAYS
    echo(f"\nReal telemetry: {feed} (NAB CPU of an AWS EC2 server, MIT licence)")
    report = run_feed(
        defs, feed, start, end, train_end, instance, echo=lambda _: None, monitor=False
    )
    echo(
        f"{report.runs} runs in {report.seconds:.1f} s; {len(report.failed_runs)} failed"
        + "".join(f"\n  FAILED {label}" for label in report.failed_runs)
    )
    with resolved_resources("warehouse") as resources:
        echo(_real_lines(feed, resources.warehouse, instance))
    return report


def _real_lines(feed: str, warehouse: Any, instance: dg.DagsterInstance) -> str:
    from sqlalchemy import text

    engine = warehouse.engine()
    prefix = (
        f"{engine.dialect.identifier_preparer.quote_schema(warehouse.schema_name)}."
        if warehouse.schema_name
        else ""
    )
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT partition_date, rows, anomalies FROM {prefix}anomaly_daily_summary "  # nosec B608: schema quoted, values bound
                "WHERE feed = :feed ORDER BY partition_date"
            ),
            {"feed": feed},
        ).all()
    lines = _champion_lines(feed, instance)[:1]
    lines.append(f"  day         rows  alerts   (NAB labels {REAL_WINDOW[0]} .. {REAL_WINDOW[1]})")
    for day, n, alerts in rows:
        labelled = REAL_WINDOW[0][:10] <= str(day) <= REAL_WINDOW[1][:10]
        lines.append(f"  {day}  {n:5d}  {alerts:6d}   {'<- labelled window' if labelled else ''}")
    return "\n".join(lines)


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
    parser.add_argument(
        "--real-feed",
        default=REAL_FEED,
        help=f"the embedded real feed run after the story ({REAL_FEED}; '' to skip it)",
    )
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
    failed = list(report.failed_runs)
    if args.real_feed:
        real = run_real_feed(defs, args.real_feed, instance)
        failed += real.failed_runs
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
