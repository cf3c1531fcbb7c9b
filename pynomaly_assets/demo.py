"""Materialize a feed's whole asset graph over a range of days, in-process, on the local instance.

``python -m pynomaly_assets.demo`` runs the embedded demo feed: it ingests and validates
14 days, trains the detector on the first 7, scores and exports all 14, and prints
what landed in the warehouse. The runs are recorded in the Dagster instance at
``$DAGSTER_HOME``, so ``dagster dev`` afterwards shows them with their checks and metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
) -> PipelineReport:
    """Ingest ``start..end``, train on the window ending ``train_end``, score ``start..end``."""
    report = PipelineReport(feed)
    began = time.perf_counter()

    def run(job_name: str, partition: str | None = None, run_config: dict | None = None) -> None:
        job = defs.resolve_job_def(job_name)
        # the full event log goes to the instance (and the UI); the console gets warnings only
        config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = job.execute_in_process(
            instance=instance, partition_key=partition, run_config=config, raise_on_error=False,
        )
        report.runs += 1
        label = f"{job_name}[{partition}]" if partition else job_name
        if not result.success:
            report.failed_runs.append(label)
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            reason = failure.step_failure_data.error.message.strip() if failure and failure.step_failure_data.error \
                else "see the run in the Dagster UI"
            echo(f"  FAILED {label}: {reason.splitlines()[0] if reason else ''}")
        else:
            echo(f"  ok     {label}")

    for day in _days(start, end):
        run(f"{feed}__ingest", day)
    run(f"{feed}__train", run_config={
        "ops": {f"{feed}__training_window": {"config": {"end_date": train_end.isoformat()}}}
    })
    for day in _days(start, end):
        run(f"{feed}__score", day)
    report.seconds = time.perf_counter() - began
    return report


def summarize(feed: str, instance: dg.DagsterInstance | None = None) -> str:
    """Per-day rows and anomalies of ``feed`` in the warehouse table, with ROC-AUC where labelled."""
    from sqlalchemy import text

    from pynomaly_assets.resources import default_resources

    warehouse = default_resources()["warehouse"]
    engine = warehouse.engine()
    table = f"{warehouse.schema_name}.anomaly_scores" if warehouse.schema_name else "anomaly_scores"
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT partition_date, COUNT(*), SUM(CASE WHEN is_anomaly THEN 1 ELSE 0 END) "
                f"FROM {table} WHERE feed = :feed GROUP BY partition_date ORDER BY partition_date"
            ),
            {"feed": feed},
        ).all()
    auc = _roc_auc_by_day(feed, instance) if instance is not None else {}
    lines = [f"warehouse {warehouse.resolved_url()} table {table}:", "  day         rows  anomalies  ROC-AUC"]
    lines += [
        f"  {d}  {n:5d}  {a:9d}  {auc[str(d)]:.3f}" if str(d) in auc else f"  {d}  {n:5d}  {a:9d}      -"
        for d, n, a in rows
    ]
    return "\n".join(lines)


def _roc_auc_by_day(feed: str, instance: dg.DagsterInstance) -> dict[str, float]:
    """The ``roc_auc`` metadata of each ``anomaly_scores`` partition (feeds with labels only)."""
    out: dict[str, float] = {}
    records = instance.fetch_materializations(dg.AssetKey([feed, "anomaly_scores"]), limit=1000).records
    for record in reversed(records):  # oldest first, so the latest run of a day wins
        event = record.event_log_entry.asset_materialization
        if event is not None and event.partition and "roc_auc" in event.metadata:
            out[event.partition] = float(event.metadata["roc_auc"].value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", default="demo_telemetry")
    parser.add_argument("--start", default="2026-11-01")
    parser.add_argument("--end", default="2026-11-14")
    parser.add_argument("--train-end", default="2026-11-07")
    args = parser.parse_args(argv)

    from pynomaly_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    print(f"Dagster instance: {instance.root_directory}")
    report = run_feed(
        defs, args.feed, dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end),
        dt.date.fromisoformat(args.train_end), instance,
    )
    print(f"{report.runs} runs in {report.seconds:.1f} s; {len(report.failed_runs)} failed")
    print(summarize(args.feed, instance))
    return 1 if report.failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
