"""Scoring one large partition on 1 vs 2 dagster-celery workers (scoring.fan_out_rows).

A demo feed of ``--machines`` machines, one reading each every ``--interval-minutes`` (160 x 288 =
46,080 rows a day by default; synthetic telemetry from the offline demo generator) is ingested and trained on its first day in this
process, on a Dagster instance on a fresh PostgreSQL database (``docker/dagster.yaml``), with a KNN
champion. Its ``anomaly_scores`` fans a day out in chunks of ``--fan-out-rows`` rows, one step
each. The second day is then scored twice with ``PYNOMALY_EXECUTOR=celery`` through the local
RabbitMQ broker (a private virtual host; ``tests/system/celery_cluster.py``), by ``dagster asset
materialize`` of ``anomaly_scores`` alone: first with one ``dagster-celery worker`` (one task at a
time), then with two. Printed side by side: rows, chunks, the run's wall time (run start to end as
the instance records it: dispatching, each worker loading the code location, plan, chunks,
combine) and the chunk phase's (first chunk started to last chunk finished), each as rows/s, and
the 2-worker / 1-worker ratios. The two runs' stored partitions must be identical.

Needs the test PostgreSQL server (``tests/pg.py``), the local RabbitMQ server and dagster-celery
(extra ``deploy``). The workers share the machine's cores with the orchestrating process, the
broker and PostgreSQL: on 2 cores, 2 workers cannot double the throughput.

    nice .venv/bin/python -m benchmarks.celery_workers             # 46,080 rows, 8 chunks
    nice .venv/bin/python -m benchmarks.celery_workers --machines 12 --interval-minutes 15 --fan-out-rows 1000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from benchmarks.machine import cpu_description, load_average, utc_stamp

FEED = "bench_celery"
DAYS = ["2026-11-01", "2026-11-02"]
SCORED_DAY = DAYS[-1]
RUN_TIMEOUT = 1800


def feed_config(machines: int, interval: int, fan_out_rows: int, train_rows: int) -> dict:
    from tests.assets.helpers import SMALL_DEMO

    return {
        **SMALL_DEMO,
        "name": FEED,
        "source": {**SMALL_DEMO["source"], "machines": machines, "interval_minutes": interval},
        "training": {"window_days": 1, "min_rows": 100, "max_rows": train_rows},
        "scoring": {"fan_out_rows": fan_out_rows},
        "lifecycle": {"candidates": ["KNN"], "n_boot": 100},
        "explanations": {"top_k": 5, "max_background": 10},
    }


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block; the caller's environment is restored after."""
    before = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


def chunk_phase_seconds(instance, run_id: str) -> float:
    """First chunk step started to last chunk step finished (seconds), from the run's events."""
    import dagster as dg

    starts, ends = [], []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or "__score_chunk[" not in (event.step_key or ""):
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts.append(record.timestamp)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            ends.append(record.timestamp)
    return max(ends) - min(starts)


def score_with_workers(cluster, instance, workers: int) -> dict:
    """Score the day with ``workers`` celery workers; the run's figures and stored partition."""
    import dagster as dg

    names = [f"bench-worker-{i}-of-{workers}" for i in range(workers)]
    cluster.start_workers(names)
    try:
        _, code, output = cluster.materialize(f"{FEED}/anomaly_scores", SCORED_DAY, RUN_TIMEOUT)
    finally:
        cluster.stop_workers()
    if code != 0:
        raise RuntimeError(f"scoring with {workers} worker(s) failed:\n{output[-6000:]}")
    record = instance.get_run_records(
        dg.RunsFilter(tags={"dagster/partition": SCORED_DAY}), limit=1
    )[0]
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, record.dagster_run.status
    stored = pd.read_parquet(
        cluster.home / "frames" / FEED / "anomaly_scores" / f"{SCORED_DAY}.parquet"
    )
    return {
        "run_seconds": record.end_time - record.start_time,
        "chunk_seconds": chunk_phase_seconds(instance, record.dagster_run.run_id),
        "stored": stored,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=160, help="demo machines (at most 200)")
    parser.add_argument(
        "--interval-minutes", type=int, default=5, help="one reading per machine every ..."
    )
    parser.add_argument("--fan-out-rows", type=int, default=6000, help="scoring.fan_out_rows")
    parser.add_argument("--train-rows", type=int, default=20_000, help="training.max_rows")
    args = parser.parse_args(argv)

    import dagster as dg

    from pynomaly_assets.definitions import build_definitions
    from pynomaly_assets.feed_context import load_feed_contexts
    from tests.assets.helpers import run_job, write_feed
    from tests.system.celery_cluster import celery_cluster, rabbitmq_unavailable

    reason = rabbitmq_unavailable()
    if reason:
        raise SystemExit(f"cannot benchmark celery workers: {reason}")
    with (
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory(prefix="pynomaly_celery_bench_") as tmp,
    ):
        warnings.simplefilter("ignore")
        root = Path(tmp)
        feeds = root / "feeds"
        write_feed(
            feeds,
            feed_config(args.machines, args.interval_minutes, args.fan_out_rows, args.train_rows),
        )
        with celery_cluster(root, feeds) as cluster, environment(cluster.instance_env()):
            defs = build_definitions(load_feed_contexts(feeds))
            with dg.DagsterInstance.from_config(str(cluster.dagster_home)) as instance:
                # trained on the first day; the second arrives after, and is scored
                for job, partition in [
                    (f"{FEED}__ingest", DAYS[0]),
                    (f"{FEED}__train", None),
                    (f"{FEED}__ingest", DAYS[1]),
                ]:
                    result = run_job(defs, instance, job, partition)
                    if not result.success:
                        raise RuntimeError(f"{job} {partition} failed")
                one = score_with_workers(cluster, instance, 1)
                two = score_with_workers(cluster, instance, 2)
    rows = len(one["stored"])
    chunks = -(-rows // args.fan_out_rows)
    identical = one["stored"].equals(two["stored"])
    print(f"machine: {cpu_description()}; load {load_average()} at {utc_stamp()}")
    print(
        f"one partition: {rows:,} rows ({args.machines} machines every {args.interval_minutes} min), "
        f"{chunks} chunks of "
        f"<= {args.fan_out_rows:,} rows, KNN champion trained on <= {args.train_rows:,} rows"
    )
    print(f"{'workers':<9}{'run s':>9}{'run rows/s':>13}{'chunks s':>11}{'chunk rows/s':>15}")
    for label, side in (("1", one), ("2", two)):
        print(
            f"{label:<9}{side['run_seconds']:>9.1f}{rows / side['run_seconds']:>13,.0f}"
            f"{side['chunk_seconds']:>11.1f}{rows / side['chunk_seconds']:>15,.0f}"
        )
    run_ratio = one["run_seconds"] / two["run_seconds"]
    chunk_ratio = one["chunk_seconds"] / two["chunk_seconds"]
    print(f"2 workers / 1 worker throughput: run {run_ratio:.2f}x, chunk phase {chunk_ratio:.2f}x")
    print(f"identical scored partitions (1 vs 2 workers): {'yes' if identical else 'NO'}")
    return {"run_ratio": run_ratio, "chunk_ratio": chunk_ratio, "identical": float(identical)}


if __name__ == "__main__":
    main()
