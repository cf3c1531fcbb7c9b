"""Pipeline scoring throughput vs calling the detector directly, on the same partition.

Ours: ``AnomalyModel.score(frame)`` — what the ``anomaly_scores`` asset runs: preprocessing
(fill, scale, one-hot), the detector, normalized score, threshold flag, severity and top
features. Reference: the wrapped PyOD detector's own ``decision_function`` on the already
preprocessed matrix (the least work any pipeline must do). Both are timed in the same
process, alternating, best of ``--repeats``.

    python benchmarks/scoring.py --rows 100000 --detectors IForest,ECOD,HBOS,KNN
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import pandas as pd

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.model import AnomalyModel

FEATURES = [FeatureSpec(name="machine_type", type="category")] + [
    FeatureSpec(name=n) for n in ("rpm", "power_kw", "temperature_c", "vibration_mm_s", "pressure_bar")
]


def demo_rows(rows: int, start: dt.date, seed: int) -> pd.DataFrame:
    settings = DemoSettings(seed=seed, machines=24, interval_minutes=1)  # 34,560 rows a day
    frames, day = [], start
    while sum(map(len, frames)) < rows:
        frames.append(generate_day(day, settings))
        day += dt.timedelta(days=1)
    return pd.concat(frames, ignore_index=True).iloc[:rows]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the scored partition")
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--detectors", default="IForest,ECOD,HBOS,KNN")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    train = demo_rows(args.train_rows, dt.date(2026, 11, 1), seed=1)
    partition = demo_rows(args.rows, dt.date(2026, 12, 1), seed=2)
    print(f"scoring {len(partition):,} rows x {len(FEATURES)} features (trained on {len(train):,})")
    print(f"{'detector':10s} {'pipeline rows/s':>16s} {'direct rows/s':>14s} {'ratio':>7s}")
    for name in args.detectors.split(","):
        model = AnomalyModel(FEATURES, name, contamination=0.01).fit(train)
        estimator = model.detector_.estimator_  # the wrapped PyOD object
        X = model.preprocessor_.transform(partition)
        ours = best_of(args.repeats, lambda m=model: m.score(partition))
        direct = best_of(args.repeats, lambda e=estimator, x=X: e.decision_function(x))
        print(f"{name:10s} {len(partition) / ours:16,.0f} {len(partition) / direct:14,.0f} "
              f"{direct / ours:7.2f}")
    print("ratio = pipeline throughput / direct detector throughput (target >= 0.90)")


if __name__ == "__main__":
    main()
