"""Chunked scoring of a large partition: peak memory at 1e6 vs 1e7 rows, and throughput.

Ours: :func:`pynomaly_core.streaming.score_parquet` — what ``anomaly_scores`` runs on a
validated partition of more than ``scoring.chunk_rows`` rows: read a chunk from Parquet, score
it (``AnomalyModel.score``), append it to the output Parquet file. Each measurement runs in a
fresh child process, whose peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) and RSS before scoring
(``VmRSS`` after imports and loading the model) are reported; the chunked children also compute
the asset's metadata from the kept arrays (``score_metadata``: p99, histogram, ROC-AUC). For contrast, the in-memory path
(``pd.read_parquet`` + ``score_frame`` + ``to_parquet``, what a small partition runs) is measured
at the smaller size.

Throughput reference, in the same child: ``AnomalyModel.score`` and the bare detector's
``decision_function`` on one in-memory chunk of ``--chunk-rows`` rows (best of 3), i.e. the
scoring work without any I/O.

The partitions are demo telemetry: ``--rows`` rows generated once and written ``--scale`` times
(tiled) for the larger file, so generation does not dominate the run.

    nice -n 10 python benchmarks/streaming.py --rows 1000000 --scale 10 --chunk-rows 250000
    python benchmarks/streaming.py --rows 2000 --scale 2 --chunk-rows 1000 --one-process   # does it run?
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scoring import FEATURES, best_of, demo_rows
from pynomaly_core.model import AnomalyModel

#: signs the model the parent saves and the children load (passed explicitly: nothing in the
#: environment changes, so the script runs the same inside a test process)
SIGNING_KEY = b"benchmark-streaming"
LAYOUT = {
    "record_key": "reading_id",
    "event_time": "event_time",
    "passthrough": ["machine_id", "anomaly_kind"],
    "label": "is_anomaly",
    "model_name": "IForest",
    "model_version": "1",
}


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(spec: dict) -> dict:
    """One measurement in this child process (a fresh one unless ``--one-process``); returns its figures."""
    from pynomaly_core.detectors import load_object
    from pynomaly_core.streaming import ScoringLayout, score_frame, score_parquet

    model = load_object(spec["model"], key=SIGNING_KEY)
    layout = ScoringLayout(
        **{**LAYOUT, "passthrough": tuple(LAYOUT["passthrough"]), "model_name": spec["detector"]}
    )
    if (
        spec["mode"] == "chunked"
    ):  # imported as in the asset's process, before measuring (it imports dagster)
        from pynomaly_assets.defs.scoring import score_metadata
    before = vm_rss_mb()
    start = time.perf_counter()
    out: dict = {"mode": spec["mode"], "rows": spec["rows"], "rss_before_mb": before}
    if spec["mode"] == "chunked":
        result = score_parquet(
            model, spec["source"], spec["destination"], layout, chunk_rows=spec["chunk_rows"]
        )
        out["stream_seconds"] = time.perf_counter() - start
        out["stream_peak_rss_mb"] = peak_rss_mb()
        # what the asset computes next from the kept arrays: p99, histogram, ROC-AUC, AP
        champion = {
            "detector": spec["detector"],
            "version": 1,
            "threshold": float(model.threshold_),
        }
        score_metadata(
            result.scores,
            result.flags,
            result.severity_counts,
            result.labels,
            result.scoring_seconds,
            champion,
            "benchmark",
        )
        out.update(chunks=result.chunks, scoring_seconds=result.scoring_seconds)
    elif spec["mode"] == "in_memory":
        frame = pd.read_parquet(spec["source"])
        score_frame(model, frame, layout).to_parquet(spec["destination"], index=False)
    elif spec["mode"] == "one_chunk":
        import pyarrow.parquet as pq

        chunk = next(
            pq.ParquetFile(spec["source"]).iter_batches(batch_size=spec["chunk_rows"])
        ).to_pandas()
        X = model.preprocessor_.transform(chunk)
        out["score_seconds"] = best_of(3, lambda: model.score(chunk))
        out["detector_seconds"] = best_of(3, lambda: model.detector_.decision_function(X))
        out["rows"] = len(chunk)
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_children(specs: list[dict], *, one_process: bool = False) -> list[dict]:
    """Each measurement of ``specs`` in a fresh child process (all in one with ``one_process``)."""
    results = []
    for group in [specs] if one_process else [[spec] for spec in specs]:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(group)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            done = ", ".join(f"{spec['mode']} ({spec['rows']:,} rows)" for spec in group)
            raise RuntimeError(f"child {done} failed:\n{proc.stderr[-3000:]}")
        results += json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def write_partition(frame: pd.DataFrame, path: Path, copies: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pq.ParquetWriter(path, table.schema) as writer:
        for _ in range(copies):
            writer.write_table(table, row_group_size=250_000)


def main(argv: list[str] | None = None) -> dict[str, float] | None:
    """Print the memory and throughput report; returns its ratios (None in a ``--child`` run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the smaller partition")
    parser.add_argument(
        "--scale", type=int, default=10, help="the larger partition has rows x scale rows"
    )
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--detector", default="IForest")
    parser.add_argument(
        "--workdir", default=None, help="where the partitions are written (default: a temp dir)"
    )
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="run the four measurements in one child, not one each (a quick check of the "
        "script: peak RSS is then the largest so far, not each measurement's own)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps([child(spec) for spec in json.loads(args.child)]))
        return None

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        model = AnomalyModel(FEATURES, args.detector, contamination=0.01).fit(
            demo_rows(args.train_rows, dt.date(2026, 11, 1), seed=1)
        )
        model.save(work / "model", key=SIGNING_KEY)
        partition = demo_rows(args.rows, dt.date(2026, 12, 1), seed=2)
        small, large = work / "small.parquet", work / "large.parquet"
        write_partition(partition, small, 1)
        write_partition(partition, large, args.scale)
        del partition
        n_large = args.rows * args.scale
        print(
            f"{args.detector}, {len(FEATURES)} features, chunks of {args.chunk_rows:,} rows; "
            f"partitions of {args.rows:,} and {n_large:,} rows ({large.stat().st_size / 2**20:.0f} MiB Parquet)"
        )
        base = {
            "model": str(work / "model"),
            "chunk_rows": args.chunk_rows,
            "detector": args.detector,
        }
        *runs, one = run_children(
            [
                {
                    **base,
                    "mode": "chunked",
                    "rows": args.rows,
                    "source": str(small),
                    "destination": str(work / "out_small.parquet"),
                },
                {
                    **base,
                    "mode": "chunked",
                    "rows": n_large,
                    "source": str(large),
                    "destination": str(work / "out_large.parquet"),
                },
                {
                    **base,
                    "mode": "in_memory",
                    "rows": args.rows,
                    "source": str(small),
                    "destination": str(work / "out_memory.parquet"),
                },
                {**base, "mode": "one_chunk", "rows": args.chunk_rows, "source": str(small)},
            ],
            one_process=args.one_process,
        )

    print(
        "peak RSS in MB: 'streaming' until the scored file is written, 'with metadata' after the asset's"
    )
    print("partition metrics (chunked), or the whole in-memory path")
    print(
        f"{'path':10s} {'rows':>12s} {'before':>8s} {'streaming':>10s} {'with metadata':>14s} "
        f"{'seconds':>8s}"
    )
    for r in runs:
        streaming = f"{r['stream_peak_rss_mb']:.0f}" if "stream_peak_rss_mb" in r else "-"
        print(
            f"{r['mode']:10s} {r['rows']:>12,} {r['rss_before_mb']:>8.0f} {streaming:>10s} "
            f"{r['peak_rss_mb']:>14.0f} {r['seconds']:>8.1f}"
        )
    small_run, large_run, memory_run = runs
    chunk_score = one["rows"] / one["score_seconds"]
    chunk_detector = one["rows"] / one["detector_seconds"]
    streamed = large_run["rows"] / large_run["stream_seconds"]
    ratios = {
        "rss_streaming": large_run["stream_peak_rss_mb"] / small_run["stream_peak_rss_mb"],
        "rss_with_metadata": large_run["peak_rss_mb"] / small_run["peak_rss_mb"],
        "rss_in_memory": memory_run["peak_rss_mb"] / small_run["peak_rss_mb"],
        "streamed_vs_score": streamed / chunk_score,
        "streamed_vs_detector": streamed / chunk_detector,
    }
    print(
        f"peak RSS {n_large:,} / {args.rows:,} rows (chunked): streaming {ratios['rss_streaming']:.2f}x, "
        f"with metadata {ratios['rss_with_metadata']:.2f}x; in-memory / chunked at {args.rows:,} rows: "
        f"{ratios['rss_in_memory']:.2f}x"
    )
    print(
        f"one in-memory chunk of {one['rows']:,}: AnomalyModel.score {chunk_score:,.0f} rows/s, "
        f"detector.decision_function {chunk_detector:,.0f} rows/s"
    )
    print(
        f"metadata of {n_large:,} rows: {large_run['seconds'] - large_run['stream_seconds']:.1f} s"
    )
    print(
        f"streamed {n_large:,} rows end to end (read + score + write): {streamed:,.0f} rows/s = "
        f"{ratios['streamed_vs_score']:.2f}x AnomalyModel.score on one chunk, "
        f"{ratios['streamed_vs_detector']:.2f}x the detector"
    )
    return ratios


if __name__ == "__main__":
    main()
