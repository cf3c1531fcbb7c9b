"""Monitoring rules on real NAB series: check failures on normal days, normal-day profile vs fixed cut-offs.

For each shared NAB series with at least ``--days`` whole UTC days, configured as the README's
feed example (one float feature, ``IForest``, ``contamination: 0.01``, default monitoring
settings), the product's own functions (not the asset graph: ``tests/assets/test_monitoring_real.py``
does that for one series) are run as the monitoring assets run them:

* the champion is fitted on the first ``--train-days`` days minus the last (the lifecycle's
  holdout), its drift reference holds the held-out day's scores, and its normal-day profile is
  measured on all of them (:func:`pynomaly_core.drift.build_normal_days`);
* every later day gets a drift report and the label-free performance measurements, judged
  twice: against the normal days (the new rule) and with the fixed cut-offs (Evidently's drift
  share, score PSI against the held-out day, canary recall against the holdout baseline with
  tabular canaries, alert-rate ratio: the rules before the profile existed).

Printed per series: scored days, days without a labelled window (``combined_windows.json``),
failures of either check on those days under each rule, and how many labelled-window days
fail a check (detection at the day level) under each rule.

    nice python benchmarks/monitoring_real.py                     # every realTweets series, 30 days
    nice python benchmarks/monitoring_real.py --series realTweets/Twitter_volume_AAPL.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAB = ROOT.parent / "shared" / "datasets" / "timeseries" / "nab"


def feed_for(name: str):
    from pynomaly_core.data.config import parse_feed

    return parse_feed(
        {
            "name": name,
            "source": {"kind": "csv", "path": "data/{date}.csv"},
            "event_time": "timestamp",
            "record_key": "reading_id",
            "features": [{"name": "value", "type": "float"}],
            "partitioning": {"start_date": "2000-01-01"},
            "detector": {"name": "IForest", "contamination": 0.01},
        }
    )


def labelled_days(series: str) -> set[str]:
    windows = json.loads((NAB / "combined_windows.json").read_text())[series]
    return {
        str(d.date())
        for start, end in windows
        for d in pd.date_range(
            pd.Timestamp(start).floor("D"), pd.Timestamp(end).floor("D"), freq="D"
        )
    }


def run_series(series: str, n_days: int, train_days: int) -> dict | None:
    from pynomaly_core.drift import (
        bucket_counts,
        build_normal_days,
        build_reference,
        drift_report,
        health_measurements,
        judge,
        normalized_scores,
        psi,
    )
    from pynomaly_core.evaluation.health import Canaries, canaries_for, measure_partition
    from pynomaly_core.evaluation.health import judge as judge_performance
    from pynomaly_core.model import AnomalyModel

    frame = pd.read_csv(NAB / series)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["reading_id"] = np.arange(len(frame))
    frame["day"] = frame["timestamp"].dt.strftime("%Y-%m-%d")
    days = sorted(frame["day"].unique())[1:]  # the first day is partial
    days = [
        d for d in days if (frame["day"] == d).sum() >= 0.9 * frame.groupby("day").size().median()
    ][:n_days]
    if len(days) < n_days:
        return None
    feed = feed_for("nab")
    settings = feed.monitoring
    window = frame[frame["day"].isin(days[:train_days])].reset_index(drop=True)
    train, holdout = (
        window[window["day"] != days[train_days - 1]],
        window[window["day"] == days[train_days - 1]],
    )
    model = AnomalyModel(
        feed.features, detector="IForest", contamination=0.01, random_state=42
    ).fit(train)
    canaries = canaries_for(feed, ["value"])
    tabular = Canaries("tabular", ("value",), settings.canary_rows)
    held = model.decision_function(holdout)
    reference = build_reference(window, ["value"], [], held, 0.01)
    normal = build_normal_days(
        window, feed, model, numeric=["value"], categorical=[], canaries=canaries, random_state=42
    )
    ranges = normal.ranges(settings)
    baseline = {
        "canary_recall": tabular.recall(model, holdout, random_state=42),
        "average_precision": None,
    }
    windows = labelled_days(series)
    rows = []
    for day in days:
        current = frame[frame["day"] == day].reset_index(drop=True)
        raw = model.decision_function(current)
        flags = raw > model.threshold_
        result = drift_report(
            reference,
            current,
            raw,
            flags,
            normal=normal,
            current_normalized=normalized_scores(model, raw),
        )
        in_window = day in days[: train_days - 1]
        seed = 42 + int(day.replace("-", "")) % 10_000
        health = health_measurements(result.summary())
        labels = pd.Series(np.nan, index=current.index)
        new = measure_partition(
            model,
            current,
            raw,
            labels,
            ["value"],
            settings,
            score_health=health,
            random_state=seed,
            canaries=canaries,
        )
        old = measure_partition(
            model,
            current,
            raw,
            labels,
            ["value"],
            settings,
            score_health=health,
            random_state=seed,
            canaries=tabular,
        )
        old_result = dataclasses.replace(
            result,
            score_psi=psi(
                reference.score_proportions, bucket_counts(raw, reference.score_edges) / len(raw)
            ),
        )
        rows.append(
            {
                "day": day,
                "labelled": day in windows,
                "training": day in days[:train_days],
                "drift_new": judge(
                    result, settings, in_training_window=in_window, normal=ranges
                ).passed,
                "perf_new": judge_performance(new.values, baseline, settings, normal=ranges).passed,
                "drift_old": judge(old_result, settings, in_training_window=in_window).passed,
                "perf_old": judge_performance(old.values, baseline, settings).passed,
            }
        )
    table = pd.DataFrame(rows)
    normal_days, labelled = table[~table["labelled"]], table[table["labelled"]]

    def failed(t: pd.DataFrame, rule: str) -> int:
        return int((~(t[f"drift_{rule}"] & t[f"perf_{rule}"])).sum())

    return {
        "series": series,
        "days": len(table),
        "normal_days": len(normal_days),
        "labelled_days": len(labelled),
        "profile_days": len(normal.table),
        "normal_failed_new": failed(normal_days, "new"),
        "normal_failed_old": failed(normal_days, "old"),
        "normal_drift_failed_old": int((~normal_days["drift_old"]).sum()),
        "normal_perf_failed_old": int((~normal_days["perf_old"]).sum()),
        "labelled_failed_new": failed(labelled, "new"),
        "labelled_failed_old": failed(labelled, "old"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", nargs="*", help="NAB files (default: every realTweets series)")
    parser.add_argument("--days", type=int, default=30, help="whole days per series (default 30)")
    parser.add_argument(
        "--train-days", type=int, default=14, help="training window (default 14, last one held out)"
    )
    args = parser.parse_args(argv)
    if not NAB.is_dir():
        print(f"{NAB}: shared NAB data absent; see ../shared/datasets/timeseries/README.md")
        return 1
    series = args.series or sorted(
        f"realTweets/{p.name}" for p in (NAB / "realTweets").glob("*.csv")
    )
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in series:
            result = run_series(name, args.days, args.train_days)
            if result is None:
                print(f"{name}: fewer than {args.days} whole days, skipped")
                continue
            out.append(result)
            print(json.dumps(result), flush=True)
    table = pd.DataFrame(out)
    if len(table):
        total = table[
            [
                "normal_days",
                "normal_failed_new",
                "normal_failed_old",
                "labelled_days",
                "labelled_failed_new",
                "labelled_failed_old",
            ]
        ].sum()
        print(table.to_markdown(index=False))
        print(
            f"all series: normal days failing a check {total['normal_failed_new']}/{total['normal_days']} "
            f"(normal-day profile) vs {total['normal_failed_old']}/{total['normal_days']} (fixed cut-offs); "
            f"labelled-window days failing {total['labelled_failed_new']}/{total['labelled_days']} vs "
            f"{total['labelled_failed_old']}/{total['labelled_days']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
