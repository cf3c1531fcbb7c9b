"""NAB and SKAB through the asset graph, evaluated from the exported table, next to the detectors called directly.

``benchmarks/nab.py`` and ``benchmarks/skab.py`` call the detectors directly. This script runs
the same files through the product a user runs — a feed YAML, daily partitions, ``__ingest``,
the first ``__train`` (candidates, champion), ``__score`` / ``__daily`` (scoring, drift and
performance checks, export to the warehouse), and the retraining sensor evaluated after every
day as the daemon would, its retrains and rescorings run — then reads ``anomaly_scores`` from
the warehouse and scores THOSE rows with the published protocols. The direct numbers are
measured in the same run with the two scripts' own functions, so the two lines are side by side.

NAB (standard profile, :mod:`pynomaly_core.evaluation.nab`), per series: the README's feed
example (one float ``value``, ``contamination: 0.01``, the detector given, its only candidate so
the graph and the direct line fit the same detector), ``monitoring.cooldown_hours: 0`` (the
story plays weeks in minutes). The first training's window is the whole UTC days that cover
NAB's probationary period (15 % of the rows), so it can see up to one day past it, never a
labelled window of these files (printed as ``train rows past probation``); the lifecycle holds
its last day out. Every day is scored by the champion of the day; the exported ``is_anomaly`` of
each row (by ``record_key`` = row number) is the detection. Direct: ``benchmarks.nab.detections``
(fitted on the probationary rows only).

SKAB (the outlier protocol of ``benchmarks/skab.py``: F1, FAR, MAR pooled over all rows): each
experiment file is its own feed (the protocol fits one model per file) with the 8 sensors as
float features. SKAB runs are minutes of 1-second readings, so their time is MAPPED, honestly
and in the open: row ``i`` of a file gets the timestamp ``2026-01-01 + i * 432 s`` — 200 rows a
day, order and spacing kept, the clock stretched — so the protocol's 400 training rows are the
first two daily partitions (the first training's window; the lifecycle fits on the first and
holds the second out: 200 fitted rows where the direct protocol fits 400) and the later rows
are the following days, scored one day at a time with the sensor on. Direct:
``benchmarks.skab.evaluate`` with the ``training`` threshold rule.

    python benchmarks/real_graph.py                       # 2 NAB series x2, all 30 SKAB files (hours)
    python benchmarks/real_graph.py --skab-files 4        # the first 2 valve1 + 2 other files
    python benchmarks/real_graph.py --smoke               # 3 days of 1 NAB series, 3 of 1 SKAB file
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running as a script from a checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_description, load_average, utc_stamp
from tests.assets.real_series import (
    NAB,
    SKAB,
    detections_by_row,
    nab_series,
    run_feed,
    write_days,
)

#: the NAB series the lifecycle tests tell their stories on (``tests/assets/test_lifecycle_real.py``)
NAB_SERIES = (
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
)
#: --smoke: a short NAB series whose labelled windows start on its second day
SMOKE_SERIES = "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
CONTAMINATION = 0.01
#: SKAB time mapping: rows per daily partition (see the module docstring)
SKAB_ROWS_PER_DAY = 200
SKAB_START = pd.Timestamp("2026-01-01", tz="UTC")


def quiet() -> None:
    """Warnings of libraries (and MLflow's progress bars) out of the report."""
    import logging
    import os

    warnings.simplefilter("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic", "dagster"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ----------------------------------------------------------------------------- NAB
def nab_feed(name: str, start: str, train_days: int, detector: str, derived: dict | None) -> dict:
    """The README's feed example for one NAB series (``detector`` the only candidate)."""
    feed = {
        "name": name,
        "source": {"kind": "csv", "path": "data/{date}.csv"},
        "event_time": "timestamp",
        "record_key": "reading_id",
        "features": [{"name": "value", "type": "float"}],
        "partitioning": {"start_date": start},
        "training": {"window_days": train_days},
        "detector": {"name": detector, "contamination": CONTAMINATION},
        "lifecycle": {"candidates": [detector]},
        "explanations": {"top_k": 0},
        "monitoring": {"cooldown_hours": 0},
    }
    if derived:
        feed["derived"] = derived
    return feed


def nab_row(
    series: str, detector: str, derived: bool, root: Path, *, max_days: int | None, seed: int
) -> dict:
    """One NAB series through the graph and directly: both NAB scores (0 null, 100 perfect)."""
    from benchmarks import nab as direct
    from pynomaly_core.evaluation import nab

    frame = nab_series(series)
    days = write_days(frame, root / "feeds" / "data")
    if max_days:
        days = days[:max_days]
        frame = frame[frame["timestamp"].str[:10].isin(days)].reset_index(drop=True)
    times = pd.to_datetime(frame["timestamp"], utc=True)
    probation = nab.probation_rows(len(frame))
    train_days = max(2, days.index(times.dt.strftime("%Y-%m-%d")[probation - 1]) + 1)
    windows = json.loads((NAB / "combined_windows.json").read_text())[series]
    rows_of = nab.window_rows(times.dt.tz_localize(None), windows)
    feed = nab_feed(
        "nab_" + Path(series).stem.split("_")[-1],
        days[0],
        train_days,
        detector,
        direct.DERIVED if derived else None,
    )
    started = time.perf_counter()
    graph = run_feed(root, feed, days, train_days)
    graph_seconds = time.perf_counter() - started
    ours = nab.score_file(detections_by_row(graph.table, len(frame)), rows_of)
    started = time.perf_counter()
    frame_direct = frame.assign(timestamp=times)
    theirs = nab.score_file(
        direct.detections(frame_direct, detector, CONTAMINATION, derived, seed), rows_of
    )
    direct_seconds = time.perf_counter() - started
    trained_rows = int(times.dt.strftime("%Y-%m-%d").isin(days[:train_days]).sum())
    return {
        "series": series,
        "detector": f"{detector} ({'derived' if derived else 'raw value'})",
        "days": len(days),
        "rows": len(frame),
        "exported": len(graph.table),
        "train rows past probation": max(0, trained_rows - probation),
        "graph NAB": nab.normalized_raw([ours.score], [ours.null], [ours.perfect]),
        "direct NAB": nab.normalized_raw([theirs.score], [theirs.null], [theirs.perfect]),
        "graph windows": f"{ours.detected_windows}/{ours.windows}",
        "direct windows": f"{theirs.detected_windows}/{theirs.windows}",
        "graph FP": ours.false_positives,
        "direct FP": theirs.false_positives,
        "first gate": graph.first_champion.get("gate", "none"),
        "retrains": graph.retrains,
        "failed runs": len(graph.failed),
        "graph s": round(graph_seconds, 1),
        "direct s": round(direct_seconds, 2),
        "_raw": (ours, theirs),
        "_failed": graph.failed,
    }


# ----------------------------------------------------------------------------- SKAB
def skab_run(path: Path, max_rows: int | None = None):
    """A SKAB experiment file (``benchmarks.skab.Run``), its first ``max_rows`` rows when given."""
    from benchmarks import skab

    run = skab.read_run(path, labelled=True)
    if max_rows:
        run = skab.Run(run.name, run.X[:max_rows], run.y[:max_rows])
    return run


def skab_frame(run) -> tuple[pd.DataFrame, np.ndarray]:
    """A SKAB run on the mapped clock (see the module docstring) and its labels."""
    from benchmarks import skab

    frame = pd.DataFrame(run.X, columns=[sensor_column(s) for s in skab.SENSORS])
    offsets = pd.to_timedelta(np.arange(len(frame)) * (86400 / SKAB_ROWS_PER_DAY), unit="s")
    frame.insert(0, "timestamp", (SKAB_START + offsets).strftime("%Y-%m-%d %H:%M:%S"))
    frame.insert(0, "reading_id", np.arange(len(frame)))
    return frame, run.y


def sensor_column(name: str) -> str:
    """A SKAB sensor name as a feed column (letters, digits, underscore)."""
    return name.replace(" ", "_")


def skab_feed(name: str, detector: str) -> dict:
    from benchmarks import skab

    return {
        "name": name,
        "source": {"kind": "csv", "path": "data/{date}.csv"},
        "event_time": "timestamp",
        "record_key": "reading_id",
        "features": [{"name": sensor_column(s), "type": "float"} for s in skab.SENSORS],
        "partitioning": {"start_date": str(SKAB_START.date())},
        "training": {"window_days": skab.N_TRAIN // SKAB_ROWS_PER_DAY, "min_rows": 100},
        "detector": {"name": detector, "contamination": CONTAMINATION},
        "lifecycle": {"candidates": [detector]},
        "explanations": {"top_k": 0},
        "monitoring": {"cooldown_hours": 0},
    }


def skab_rows(
    files: list[Path], detector: str, root: Path, seed: int, max_rows: int | None = None
) -> list[dict]:
    """Every file through the graph (one feed each) and directly; pooled F1 / FAR / MAR of both."""
    from benchmarks import skab

    graph, retrains, failed, seconds = skab.Counts(), 0, {}, 0.0
    runs = []
    for i, path in enumerate(files):
        runs.append(skab_run(path, max_rows))
        frame, y = skab_frame(runs[-1])
        where = root / f"skab_{i}"
        days = write_days(frame, where / "feeds" / "data")
        started = time.perf_counter()
        out = run_feed(
            where, skab_feed(f"skab_{i}", detector), days, skab.N_TRAIN // SKAB_ROWS_PER_DAY
        )
        seconds += time.perf_counter() - started
        graph.add(y, detections_by_row(out.table, len(frame)))
        retrains += out.retrains
        failed.update({f"{path.name}: {k}": v for k, v in out.failed.items()})
    started = time.perf_counter()
    config = skab.Config(detector, detector, {"contamination": CONTAMINATION}, "training")
    direct = skab.evaluate(config, runs, [], seed, {})
    direct_seconds = time.perf_counter() - started
    common = {"files": len(files), "detector": f"{detector} (c={CONTAMINATION:g})"}
    return [
        {
            **common,
            "path": "graph (exported table)",
            "F1": graph.f1,
            "FAR %": graph.far,
            "MAR %": graph.mar,
            "retrains": retrains,
            "failed runs": len(failed),
            "seconds": round(seconds, 1),
            "_failed": failed,
        },
        {
            **common,
            "path": "direct (benchmarks/skab.py)",
            "F1": direct.counts.f1,
            "FAR %": direct.counts.far,
            "MAR %": direct.counts.mar,
            "retrains": 0,
            "failed runs": 0,
            "seconds": round(direct_seconds, 1),
            "_failed": {},
        },
    ]


# ----------------------------------------------------------------------------- report
def _shown(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nab-series", nargs="*", default=list(NAB_SERIES))
    parser.add_argument("--nab-detector", default="IForest")
    parser.add_argument(
        "--nab-derived",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run each series with benchmarks/nab.py's derived features (default on)",
    )
    parser.add_argument(
        "--skab-files", type=int, default=None, help="first N files, alternating folders (0: none)"
    )
    parser.add_argument("--skab-detector", default="PCA_TQ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="3 days of a short NAB series, 600 rows of 1 SKAB file"
    )
    args = parser.parse_args(argv)
    for folder in (NAB, SKAB):
        if not folder.is_dir():
            raise SystemExit(
                f"{folder}: shared data absent; see ../shared/datasets/timeseries/README.md"
            )
    quiet()
    print(
        f"# NAB and SKAB through the asset graph - {utc_stamp()} - {cpu_description()} "
        f"(load {load_average()})"
    )
    from benchmarks import skab

    series = [SMOKE_SERIES] if args.smoke else args.nab_series
    files = skab.experiment_files(SKAB)
    if args.smoke or args.skab_files is not None:
        count = 1 if args.smoke else args.skab_files
        by_folder = [[p for p in files if p.parent.name == f] for f in skab.EXPERIMENT_FOLDERS]
        files = [p for group in zip(*by_folder, strict=False) for p in group][:count]
    nab_rows, failed = [], {}
    with tempfile.TemporaryDirectory(prefix="pynomaly-real-graph-") as tmp:
        for i, name in enumerate(series):
            for derived in (False, True) if args.nab_derived and not args.smoke else (False,):
                row = nab_row(
                    name,
                    args.nab_detector,
                    derived,
                    Path(tmp) / f"nab_{i}_{int(derived)}",
                    max_days=3 if args.smoke else None,
                    seed=args.seed,
                )
                nab_rows.append(row)
                failed.update(row["_failed"])
                print(json.dumps(_shown([row]).iloc[0].to_dict(), default=str), flush=True)
        skab_table = (
            skab_rows(
                files,
                args.skab_detector,
                Path(tmp),
                args.seed,
                max_rows=600 if args.smoke else None,
            )
            if files
            else []
        )
        failed.update(skab_table[0]["_failed"] if skab_table else {})
    nab_table = _shown(nab_rows)
    from pynomaly_core.evaluation import nab

    if nab_rows:
        print("\n## NAB standard profile per series: through the graph vs the detector directly\n")
        print(nab_table.to_markdown(index=False, floatfmt=".1f"))
        graph_raw = [r["_raw"][0] for r in nab_rows]
        direct_raw = [r["_raw"][1] for r in nab_rows]
        print(
            f"\nall NAB rows: graph {nab.normalized(graph_raw):.1f} vs direct "
            f"{nab.normalized(direct_raw):.1f} (graph/direct false positives "
            f"{sum(s.false_positives for s in graph_raw)}/{sum(s.false_positives for s in direct_raw)})"
        )
    shown = _shown(skab_table)
    if skab_table:
        print(f"\n## SKAB outlier protocol, {len(files)} file(s): through the graph vs directly\n")
        print(shown.to_markdown(index=False, floatfmt=".3f"))
        graph, direct = skab_table
        print(
            f"\nSKAB graph/direct F1 ratio {graph['F1'] / max(direct['F1'], 1e-9):.2f}, "
            f"FAR ratio {graph['FAR %'] / max(direct['FAR %'], 1e-9):.2f}"
        )
    for key, message in failed.items():
        print(f"FAILED {key}: {message.splitlines()[0] if message else ''}")
    return {"nab": nab_table, "skab": shown}


if __name__ == "__main__":
    main()
