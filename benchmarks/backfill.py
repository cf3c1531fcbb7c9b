"""Backfilling a year of an hourly feed: one run for the whole range vs one run per partition.

A feed with ``partitioning: {granularity: hourly}`` has 8,760 partitions a year. Its ingest
assets (``raw``, ``validated``; also ``anomaly_scores`` and ``anomaly_table``) carry
``BackfillPolicy.single_run()``, so Dagster backfills a range of them in one run, which loops
over the partitions and still records each partition's materialization and checks. Without it,
Dagster launches one run per partition.

The data is **synthetic**: one series (a daily cycle plus noise, one value every
``--interval-minutes``), written as one CSV per UTC day, because the shared NAB series cover
weeks, not a year. Both sides run the feed's real ``<feed>__ingest`` job in this process on a
fresh Dagster instance (SQLite storage, as ``dagster dev``) with a SQLite warehouse:

* **single run**: one run tagged with the range, exactly the run a single-run backfill launches;
* **one run per partition**: ``--sample`` runs of one hour each, timed, and the wall time
  **extrapolated** to ``--hours`` partitions (runs take about the same time each; running
  thousands would take hours). These in-process runs skip what the daemon's runs add (a process
  and code-location load per run), so the per-partition figure is a lower bound.

Printed side by side: partitions, runs, wall seconds (measured or extrapolated, marked), seconds
per partition, and the ratio.

    nice .venv/bin/python benchmarks/backfill.py                          # a year; 48 sampled runs
    nice .venv/bin/python benchmarks/backfill.py --hours 720 --sample 24  # a month
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEED = "backfill_series"
START = "2025-01-01"


def write_series(directory: Path, days: int, interval_minutes: int, seed: int) -> int:
    """One CSV per UTC day of one synthetic series (daily cycle + noise); returns the rows written."""
    rng = np.random.default_rng(seed)
    per_day = 24 * 60 // interval_minutes
    directory.mkdir(parents=True, exist_ok=True)
    for day in pd.date_range(START, periods=days, freq="D", tz="UTC"):
        times = day + pd.to_timedelta(np.arange(per_day) * interval_minutes, unit="min")
        hours = times.hour + times.minute / 60
        value = 20 + 5 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.5, per_day)
        pd.DataFrame(
            {
                "reading_id": [f"{t:%Y%m%d%H%M}" for t in times],
                "ts": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": np.round(value, 3),
            }
        ).to_csv(directory / f"{day:%Y-%m-%d}.csv", index=False)
    return days * per_day


def feed_config() -> dict:
    """The README's one-metric feed, hourly."""
    return {
        "name": FEED,
        "source": {"kind": "csv", "path": "series/{date}.csv"},
        "event_time": "ts",
        "record_key": "reading_id",
        "features": [{"name": "value", "type": "float"}],
        "partitioning": {"start_date": START, "granularity": "hourly"},
        "validation": {"min_rows": 1},
    }


@contextlib.contextmanager
def environment(home: Path, feeds: Path) -> Iterator[None]:
    """Point the code location at ``home`` and ``feeds`` for one side; every variable restored after."""
    names = ("PYNOMALY_HOME", "PYNOMALY_FEEDS_DIR", "PYNOMALY_WAREHOUSE_URL")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["PYNOMALY_HOME"], os.environ["PYNOMALY_FEEDS_DIR"] = str(home), str(feeds)
    os.environ.pop("PYNOMALY_WAREHOUSE_URL", None)  # the SQLite warehouse under home
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_side(root: Path, feeds: Path, keys: list[str], single: bool) -> dict:
    """Run the ingest job over ``keys``: in one run (``single``) or one run per key; times it."""
    import dagster as dg

    from pynomaly_assets.definitions import build_definitions
    from pynomaly_assets.feed_context import load_feed_contexts

    side = root / ("single" if single else "per_partition")
    side.mkdir()
    with environment(side / "home", feeds), dg.instance_for_test(temp_dir=str(side)) as instance:
        job = build_definitions(load_feed_contexts(feeds)).resolve_job_def(f"{FEED}__ingest")
        start = time.perf_counter()
        if single:
            tags = {
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            }
            results = [job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)]
        else:
            results = [
                job.execute_in_process(instance=instance, partition_key=k, raise_on_error=False)
                for k in keys
            ]
        wall = time.perf_counter() - start
        failed = [r.run_id for r in results if not r.success]
        if failed:
            raise RuntimeError(f"{len(failed)} ingest run(s) failed, e.g. run {failed[0]}")
        validated = dg.AssetKey([FEED, "validated"])
        checks = instance.all_logs(
            results[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        return {
            "runs": instance.get_runs_count(),
            "wall": wall,
            "partitions": len(instance.get_materialized_partitions(validated)),
            "check_evaluations_first_run": len(checks),
        }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=8760, help="hourly partitions backfilled")
    parser.add_argument(
        "--sample", type=int, default=48, help="one-run-per-partition runs timed (extrapolated)"
    )
    parser.add_argument("--interval-minutes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sample = min(args.sample, args.hours)
    # Dagster's beta/preview notices, once per asset; scoped, so a caller's filters are untouched
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="pynomaly_backfill_") as tmp:
        warnings.simplefilter("ignore")
        root = Path(tmp)
        feeds = root / "feeds"
        days = -(-args.hours // 24)
        rows = write_series(feeds / "series", days, args.interval_minutes, args.seed)
        (feeds / f"{FEED}.yaml").write_text(yaml.safe_dump(feed_config()))
        from pynomaly_assets.feed_context import load_feed_contexts

        keys = load_feed_contexts(feeds)[0].partitions_def.get_partition_keys()[: args.hours]
        single = run_side(root, feeds, keys, single=True)
        per = run_side(root, feeds, keys[:sample], single=False)

    per_partition_wall = per["wall"] / sample
    extrapolated = per_partition_wall * len(keys)
    ratio = extrapolated / single["wall"]
    print(
        f"synthetic series: {rows:,} rows, one every {args.interval_minutes} min, "
        f"{len(keys):,} hourly partitions ({keys[0]} .. {keys[-1]})"
    )
    print(f"{'backfill':<26}{'partitions':>11}{'runs':>8}{'wall s':>11}{'s/partition':>13}")
    print(
        f"{'single run':<26}{single['partitions']:>11,}{single['runs']:>8,}"
        f"{single['wall']:>11.1f}{single['wall'] / len(keys):>13.4f}"
    )
    print(
        f"{'one run per partition':<26}{len(keys):>11,}{len(keys):>8,}"
        f"{extrapolated:>10.1f}*{per_partition_wall:>13.4f}"
    )
    print(
        f"* extrapolated from {sample} measured runs ({per['wall']:.1f} s, {per['runs']} runs, "
        f"{per['partitions']} partitions materialized) to {len(keys):,}"
    )
    print(
        f"single run records every partition: {single['partitions']:,} of {len(keys):,} "
        f"validated partitions, {single['check_evaluations_first_run']:,} check evaluations "
        f"(3 checks x {len(keys):,} partitions + 3 for the run)"
    )
    print(f"one run per partition / single run, wall time: {ratio:.1f}x; runs: {len(keys):,} vs 1")
    return {"wall_ratio": ratio, "runs_single": single["runs"], "runs_per_partition": len(keys)}


if __name__ == "__main__":
    main()
