"""Drift report on a large partition vs a one-pass histogram floor and Evidently on all rows; demo-feed agreement.

(a) Speed, on ``--rows`` x ``--columns`` numeric columns (synthetic: normal, log-normal,
    uniform and gamma columns; the first ``--drifted`` of them shifted by decreasing
    amounts, the last ones below Evidently's thresholds), measured side by side in one
    process:

    * ours: ``drift_report`` — Evidently on the reference's 5,000-row sample vs a
      20,000-row sample of the partition (with its HTML report written), PSI of every
      column over all rows, score PSI/KS and the binomial alert-rate test (best of
      ``--repeats``);
    * floor: ``np.searchsorted`` + ``np.bincount`` of every column against the
      precomputed edges, the least work any drift check over all rows must do (best of
      ``--repeats``);
    * Evidently alone: ``DataDriftPreset`` on the full reference vs the full partition
      (``--reference-rows`` rows, default = ``--rows``), once; minutes at 1e6 rows, skip
      it with ``--skip-full``. Its per-column decisions are compared with ours.

(b) Decision agreement on the demo feed (``pynomaly_assets/feeds/demo_telemetry.yaml``,
    drift from 2026-11-12): reference = 2026-11-01..07 with an IForest champion
    (contamination 0.012, 200 trees) fitted on it; for each day 2026-11-01..14, the
    per-column decisions of our sampled ``drift_report`` vs Evidently on the full
    reference and the full partition.

    nice python benchmarks/drift.py                      # 1e6 x 20, with the full Evidently run
    nice python benchmarks/drift.py --rows 200000 --skip-full --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import cpu_description, load_average, utc_stamp
from benchmarks.scoring import best_of
from pynomaly_core.data.config import load_feed
from pynomaly_core.data.sources import read_partition
from pynomaly_core.drift import build_reference, drift_report, evidently_drift
from pynomaly_core.model import AnomalyModel

DEMO_FEED = (
    Path(__file__).resolve().parent.parent / "pynomaly_assets" / "feeds" / "demo_telemetry.yaml"
)
#: (mean shift in reference standard deviations, scale factor) of the drifted columns, in order
SHIFTS = [(1.0, 1.0), (0.0, 1.6), (0.5, 1.0), (0.25, 1.0), (0.15, 1.0), (0.03, 1.0), (0.0, 1.03)]


def synthetic(rows: int, columns: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    draws = [
        lambda: rng.normal(10.0, 2.0, rows),
        lambda: rng.lognormal(0.0, 0.6, rows),
        lambda: rng.uniform(-1.0, 1.0, rows),
        lambda: rng.gamma(2.0, 1.5, rows),
    ]
    return pd.DataFrame({f"x{i:02d}": draws[i % len(draws)]() for i in range(columns)})


def drift_columns(frame: pd.DataFrame, reference: pd.DataFrame, drifted: int) -> pd.DataFrame:
    frame = frame.copy()
    for column, (shift, scale) in zip(frame.columns[:drifted], SHIFTS, strict=False):
        mean, std = reference[column].mean(), reference[column].std()
        frame[column] = mean + (frame[column] - mean) * scale + shift * std
    return frame


def pseudo_scores(frame: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """A stand-in detector score: mean squared z-score over the columns (higher = more unusual)."""
    z = (frame.to_numpy() - reference.mean().to_numpy()) / reference.std().to_numpy()
    return np.mean(z * z, axis=1)


def floor_pass(frame: pd.DataFrame, edges: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [
        np.bincount(
            np.searchsorted(edges[c], frame[c].to_numpy(), side="right"),
            minlength=len(edges[c]) + 1,
        )
        for c in frame.columns
    ]


def speed(args) -> None:
    reference_frame = synthetic(args.reference_rows or args.rows, args.columns, seed=1)
    partition = drift_columns(
        synthetic(args.rows, args.columns, seed=2), reference_frame, args.drifted
    )
    numeric = list(partition.columns)
    reference_scores = pseudo_scores(reference_frame, reference_frame)
    threshold = np.quantile(reference_scores, 0.99)
    scores = pseudo_scores(partition, reference_frame)
    flags = scores > threshold
    build_start = time.perf_counter()
    reference = build_reference(reference_frame, numeric, [], reference_scores, 0.01)
    build_seconds = time.perf_counter() - build_start
    print(
        f"(a) partition {len(partition):,} rows x {len(numeric)} numeric columns "
        f"({args.drifted} drifted), reference {len(reference_frame):,} rows "
        f"(build_reference {build_seconds:.2f} s, once per champion)"
    )

    workdir = tempfile.TemporaryDirectory(
        prefix="drift-bench-"
    )  # the ~4 MB HTML report, removed below
    html = Path(workdir.name) / "report.html"
    drift_report(reference, partition.iloc[:1000], scores[:1000], flags[:1000])  # imports Evidently
    result = None

    def ours():
        nonlocal result
        result = drift_report(reference, partition, scores, flags, html_path=html)

    ours_s = best_of(args.repeats, ours)
    workdir.cleanup()
    floor_s = best_of(args.repeats, lambda: floor_pass(partition, reference.edges))
    print(f"{'':52s} {'seconds':>9s}")
    print(f"{'ours: drift_report (sampled Evidently + full PSI)':52s} {ours_s:9.2f}")
    print(f"{'floor: searchsorted + bincount of every column':52s} {floor_s:9.2f}")
    print(f"ours / floor = {ours_s / floor_s:.1f}   (target: ours < 15 s at 1e6 x 20)")
    print(
        f"ours: {len(result.drifted_columns)} drifted columns {result.drifted_columns}, score PSI "
        f"{result.score_psi:.3f}, alert rate x{result.alert_rate_ratio:.2f} (p {result.alert_rate_pvalue:.1e})"
    )
    if args.skip_full:
        print("Evidently on all rows: skipped (--skip-full)")
        return
    start = time.perf_counter()
    full, _ = evidently_drift(reference_frame, partition, numeric, [])
    full_s = time.perf_counter() - start
    same = int((full["drifted"].to_numpy() == result.columns["drifted"].to_numpy()).sum())
    print(f"{'Evidently alone: full reference vs full partition':52s} {full_s:9.2f}")
    print(f"evidently / ours = {full_s / ours_s:.1f}")
    print(f"per-column decisions, ours vs Evidently on all rows: {same}/{len(numeric)} agree")
    merged = result.columns[["column", "statistic", "drifted", "psi"]].merge(
        full[["column", "statistic", "drifted"]], on="column", suffixes=("_ours", "_full")
    )
    print(
        merged.head(max(args.drifted + 1, 1)).to_string(
            index=False, float_format=lambda v: f"{v:.4f}"
        )
    )


def agreement(args) -> None:
    feed = load_feed(DEMO_FEED)
    numeric = [f.name for f in feed.features if f.type != "category"]
    categorical = [f.name for f in feed.features if f.type == "category"]
    start = dt.date(2026, 11, 1)
    frames = {
        start + dt.timedelta(days=i): read_partition(feed, start + dt.timedelta(days=i)).frame
        for i in range(14)
    }
    reference_frame = pd.concat(
        [frames[start + dt.timedelta(days=i)] for i in range(7)], ignore_index=True
    )
    model = AnomalyModel(
        feed.features,
        feed.detector.name,
        contamination=feed.detector.contamination,
        params=feed.detector.params,
    ).fit(reference_frame)
    reference = build_reference(
        reference_frame,
        numeric,
        categorical,
        model.decision_function(reference_frame),
        feed.detector.contamination,
    )
    print(
        f"\n(b) demo feed {feed.name}: reference {start}..{start + dt.timedelta(days=6)} "
        f"({len(reference_frame):,} rows, sample {len(reference.sample):,}), champion {feed.detector.name}"
    )
    print(
        f"{'day':10s} {'agree':>5s} {'ours drifted':34s} {'full Evidently drifted':34s} "
        f"{'scorePSI':>8s} {'KS p':>8s} {'alerts':>6s} {'binom p':>8s}"
    )
    matched = total = 0
    for day, frame in frames.items():
        scored = model.score(frame)
        ours = drift_report(
            reference, frame, scored["score"].to_numpy(), scored["is_anomaly"].to_numpy()
        )
        full, _ = evidently_drift(reference_frame, frame, numeric, categorical)
        same = int((ours.columns["drifted"].to_numpy() == full["drifted"].to_numpy()).sum())
        matched, total = matched + same, total + len(full)
        print(
            f"{day!s:10s} {same:>2d}/{len(full):<2d} {','.join(ours.drifted_columns) or '-':34s} "
            f"{','.join(full.loc[full['drifted'], 'column']) or '-':34s} {ours.score_psi:8.3f} "
            f"{ours.score_ks_pvalue:8.1e} x{ours.alert_rate_ratio:5.2f} {ours.alert_rate_pvalue:8.1e}"
        )
    print(
        f"decision agreement, ours (sampled) vs Evidently (full reference, full partition): "
        f"{matched}/{total} = {matched / total:.1%}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the partition of (a)")
    parser.add_argument(
        "--reference-rows", type=int, default=None, help="reference rows in (a) (default: --rows)"
    )
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument(
        "--drifted", type=int, default=7, help=f"drifted columns (at most {len(SHIFTS)})"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-full", action="store_true", help="skip Evidently on all rows in (a)"
    )
    parser.add_argument("--skip-demo", action="store_true", help="skip the demo-feed agreement (b)")
    args = parser.parse_args(argv)
    if not 0 <= args.drifted <= min(len(SHIFTS), args.columns):
        parser.error(f"--drifted must be in 0..{min(len(SHIFTS), args.columns)}")
    print(f"{utc_stamp()}; {cpu_description()}; load {load_average()}")
    speed(args)
    if not args.skip_demo:
        agreement(args)
    print(f"load at the end: {load_average()}")


if __name__ == "__main__":
    main()
