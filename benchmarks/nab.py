"""NAB (Numenta Anomaly Benchmark), standard profile, on the shared NAB files: ours next to the
published detectors, normalized on the same files.

Protocol (the published one, see ``../shared/datasets/timeseries/README.md``): each series in
time order; its first 15 % (at most 750 rows) is the probationary period, which a detector may
learn from but which is not scored; every later row is scored and a threshold turns scores into
detections; the NAB rule (:mod:`pynomaly_core.evaluation.nab`) rewards the earliest detection in
each labelled window and charges false alarms and misses. The published detectors' per-file raw
scores (``published_scores/``) are normalized here with this subset's own null and perfect scores,
so every number in the table is on the same 51 files.

Ours, chosen before looking at any result (nothing here is tuned on the labelled windows):

* the feed's time-aware features (:mod:`pynomaly_core.features`) of the one ``value`` column:
  the value, its first difference, rolling z-scores over the previous 12 and 288 rows (an hour and
  a day at NAB's usual 5-minute step) and the rolling standard deviation over 12 rows;
* a registry detector fitted on the probationary rows only (robust scaling as in the product);
* detections = score above the detector's threshold at ``--contamination`` (default 0.01, the
  product's default) — a threshold learnt from the probationary rows alone;
* the same detector on the raw value alone, to show what the derived features add.

    python benchmarks/nab.py                 # all 51 files, IForest and PCA_TQ
    python benchmarks/nab.py --smoke         # 3 files, for the test suite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import cpu_description, load_average, utc_stamp
from pynomaly_core.data.config import parse_feed
from pynomaly_core.data.preprocess import FeaturePreprocessor
from pynomaly_core.detectors import create
from pynomaly_core.evaluation import nab
from pynomaly_core.features import derive

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "timeseries" / "nab"
DERIVED = {
    "features": [
        {"source": "value", "kind": "diff"},
        {"source": "value", "kind": "rolling_zscore", "window": 12},
        {"source": "value", "kind": "rolling_zscore", "window": 288},
        {"source": "value", "kind": "rolling_std", "window": 12},
    ],
}
FEED = parse_feed(
    {
        "name": "nab",
        "source": {"kind": "csv", "path": "nab/{date}.csv"},
        "event_time": "timestamp",
        "record_key": "row",
        "features": [{"name": "value", "type": "float"}],
        "partitioning": {"start_date": "2000-01-01"},
        "derived": DERIVED,
    }
)
#: what the published table calls each detector whose scores ship with the data
PUBLISHED = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "randomCutForest": "Random Cut Forest",
    "windowedGaussian": "Windowed Gaussian",
    "knncad": "KNN CAD",
    "contextOSE": "CAD OSE",
    "relativeEntropy": "Relative Entropy",
    "twitterADVec": "Twitter ADVec",
    "skyline": "Skyline",
    "bayesChangePt": "Bayes changepoint",
    "expose": "EXPoSE",
    "random": "Random",
}


def series_files(limit: int | None = None) -> list[str]:
    """Every shared file; with ``limit``, the first ``limit`` files that have labelled windows."""
    windows = json.loads((DATA / "combined_windows.json").read_text())
    names = sorted(windows)
    return [n for n in names if windows[n]][:limit] if limit else names


def detections(
    frame: pd.DataFrame, detector: str, contamination: float, derived: bool, seed: int
) -> np.ndarray:
    """Boolean detections for every row of one series (probationary rows never detect)."""
    frame = frame.assign(row=np.arange(len(frame)).astype(str))
    columns = ["value"]
    if derived:
        frame = derive(frame, FEED)
        columns = FEED.model_feature_names
    probation = nab.probation_rows(len(frame))
    specs = [{"name": c, "type": "float", "nullable": True, "missing": "median"} for c in columns]
    try:
        pre = FeaturePreprocessor(specs, scaling="robust").fit(frame.iloc[:probation])
    except (
        ValueError
    ):  # a flat probationary period (art_flatline): nothing to learn, nothing detected
        return np.zeros(len(frame), dtype=bool)
    X = pre.transform(frame)
    model = create(detector, contamination=contamination, random_state=seed).fit(X[:probation])
    out = model.decision_function(X) > model.threshold_
    out[:probation] = False
    return out


def run(files: list[str], detectors: list[str], contamination: float, seed: int) -> pd.DataFrame:
    windows = json.loads((DATA / "combined_windows.json").read_text())
    rows = []
    for name in files:
        frame = pd.read_csv(DATA / name)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        rows_of = nab.window_rows(frame["timestamp"].dt.tz_localize(None), windows[name])
        for det in detectors:
            for derived in (True, False):
                start = time.perf_counter()
                result = nab.score_file(
                    detections(frame, det, contamination, derived, seed), rows_of
                )
                rows.append(
                    {
                        "file": name,
                        "detector": f"{det} ({'derived' if derived else 'raw value'})",
                        "score": result.score,
                        "null": result.null,
                        "perfect": result.perfect,
                        "detected": result.detected_windows,
                        "windows": result.windows,
                        "false_positives": result.false_positives,
                        "seconds": time.perf_counter() - start,
                    }
                )
    return pd.DataFrame(rows)


def published(files: list[str], ours: pd.DataFrame) -> pd.DataFrame:
    """Published detectors' raw scores on ``files``, normalized with this subset's null/perfect."""
    per_file = ours.drop_duplicates("file").set_index("file")[["null", "perfect"]]
    out = []
    for stem, label in PUBLISHED.items():
        path = DATA / "published_scores" / f"{stem}_standard_scores.csv"
        if not path.exists():
            continue
        table = pd.read_csv(path).dropna(subset=["File"]).set_index("File")
        if not set(files) <= set(table.index):
            continue
        raw = table.loc[files, "Score"].astype(float)
        out.append(
            {
                "detector": f"{label} (published)",
                "nab_standard": nab.normalized_raw(
                    raw.to_numpy(),
                    per_file.loc[files, "null"].to_numpy(),
                    per_file.loc[files, "perfect"].to_numpy(),
                ),
            }
        )
    return pd.DataFrame(out)


def summarize(ours: pd.DataFrame) -> pd.DataFrame:
    groups = ours.groupby("detector", sort=False)
    return pd.DataFrame(
        {
            "nab_standard": groups.apply(
                lambda g: nab.normalized_raw(g["score"], g["null"], g["perfect"]),
                include_groups=False,
            ),
            "windows_detected": groups["detected"].sum().astype(str)
            + "/"
            + groups["windows"].sum().astype(str),
            "false_positives": groups["false_positives"].sum(),
            "seconds": groups["seconds"].sum().round(1),
        }
    ).reset_index()


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default="IForest,PCA_TQ")
    parser.add_argument("--contamination", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="3 files: a quick check that the script runs"
    )
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"NAB data not found at {DATA}")
    files = series_files(3 if args.smoke else None)
    print(
        f"# NAB standard profile on {len(files)} shared files - {utc_stamp()} - {cpu_description()} "
        f"(load {load_average()})"
    )
    ours = run(files, args.detectors.split(","), args.contamination, args.seed)
    table = pd.concat([summarize(ours), published(files, ours)], ignore_index=True)
    table = table.sort_values("nab_standard", ascending=False)
    print(table.to_markdown(index=False, floatfmt=".1f"))
    return table


if __name__ == "__main__":
    main()
