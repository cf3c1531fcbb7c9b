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

``--graph`` measures the self-healing loop THROUGH THE ASSET GRAPH instead (issue #12's proof
list), on the NAB series the lifecycle tests use (``--series`` to choose): each series cut into
daily CSV files, the README's feed example with ``monitoring.cooldown_hours: 0`` (weeks played in
minutes), the first ``--first-week`` days ingested, trained on and scored, then each later day
ingested and scored with the retraining sensor evaluated after it as the daemon would, its
retrains and rescorings run (``tests/assets/real_series.py``, shared with the tests). Measured
from the exported warehouse table: check failures on days without a labelled window; alerts
per day outside the windows on days scored by the first champion (before the sensor acted) and
by champions the sensor promoted (after), and what the first champion left alone flags on those
same after-days; alerts per normal day against twice ``contamination`` x rows.

    nice python benchmarks/monitoring_real.py --graph             # 825cc2 and 5f5533, ~10 min each
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


#: the NAB series of ``tests/assets/test_lifecycle_real.py`` (one weak first champion, one level drop)
GRAPH_SERIES = (
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
)


def failing_details(home: Path, feed: str, day: str, failed: list[str]) -> dict:
    """Why ``day``'s checks failed: the verdict of its latest drift report (the JSON the
    ``drift_report`` asset writes) and of its ``detector_performance`` value, with their numbers."""
    out: dict = {"failed": failed}
    drift = sorted((home / "reports" / feed / "drift").glob(f"{day}.model-*.json"))
    if drift:
        doc = json.loads(drift[-1].read_text())
        out["drift"] = {
            k: doc[k]
            for k in ("severity", "reasons", "score_psi", "score_ks", "drift_share", "alert_rate")
            if k in doc
        } | {k: v for k, v in doc.items() if k.endswith("_limit")}
    for path in sorted(home.rglob(f"*{day}*")):
        if "detector_performance" not in str(path) or not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        out["performance"] = {
            k: v
            for k, v in doc.items()
            if k in ("model_version", "severity", "reasons", "rule", "canary_recall", "alert_rate")
            or k.endswith("_limit")
        }
    return out


def decisions(home: Path) -> list[dict]:
    """Every champion decision of the run, in time order, from the MLflow tags the lifecycle
    writes on the challenger's run: decision, gate, reason, and the days it was trained / fitted on."""
    import sqlite3

    keys = (
        "pynomaly.promotion",
        "pynomaly.promotion_at",
        "pynomaly.promotion_reason",
        "pynomaly.gate",
        "pynomaly.training_days",
        "pynomaly.fitted_days",
        "pynomaly.detector",
    )
    out = []
    for db in home.rglob("mlflow.db"):
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT run_uuid, key, value FROM tags").fetchall()
        runs: dict[str, dict] = {}
        for run, key, value in rows:
            if key in keys:
                runs.setdefault(run, {})[key.removeprefix("pynomaly.")] = value
        out += [r for r in runs.values() if "promotion" in r]
    return sorted(out, key=lambda r: r.get("promotion_at", ""))


def graph_series(series: str, root: Path, first_week: int, max_days: int | None = None) -> dict:
    """One NAB series through the asset graph with the monitoring loop on; the proof list's figures."""
    from tests.assets.real_series import (
        flags_outside_windows,
        labelled_windows,
        left_alone,
        nab_series,
        run_feed,
        write_days,
    )

    frame = nab_series(series)
    days = write_days(frame, root / "feeds" / "data")[:max_days]
    feed = {
        "name": "cpu",
        "source": {"kind": "csv", "path": "data/{date}.csv"},
        "event_time": "timestamp",
        "record_key": "reading_id",
        "features": [{"name": "value", "type": "float", "min": 0}],
        "partitioning": {"start_date": days[0]},
        "detector": {"name": "IForest", "contamination": 0.01},
        "monitoring": {"cooldown_hours": 0},
    }
    graph = run_feed(root, feed, days, first_week)
    windows = labelled_windows(series)
    table = graph.table
    loop = flags_outside_windows(table, windows).reindex(days, fill_value=0)
    alone = flags_outside_windows(left_alone(graph), windows).reindex(days, fill_value=0)
    from pynomaly_core.lifecycle import ChampionRecord

    first = str(ChampionRecord.from_value(graph.first_value).version) if graph.first_value else None
    versions = table.groupby(table["partition_date"].astype(str))["model_version"].agg(
        lambda v: set(v.astype(str))
    )
    before = [d for d in days if versions.get(d) == {first}]
    after = [d for d in days if d in versions and first not in versions[d]]
    marked = labelled_days(series)
    normal = [d for d in days if d not in marked and d in graph.checks]
    failing = [d for d in normal if not all(v is not False for v in graph.checks[d].values())]
    home = graph.home or root / "home"
    why = {
        d: failing_details(
            home, feed["name"], d, [k for k, v in graph.checks[d].items() if v is False]
        )
        for d in failing
    }
    rows = table.groupby(table["partition_date"].astype(str)).size()
    alerts = table.groupby(table["partition_date"].astype(str))["is_anomaly"].sum()
    normal_alerts = alerts.reindex(normal, fill_value=0)
    budget = 2 * 0.01 * rows.reindex(normal, fill_value=0)

    def mean(values: pd.Series, keys: list[str]) -> float | None:
        return round(float(values[keys].mean()), 2) if keys else None

    return {
        "series": series,
        "days": len(days),
        "first_gate": graph.first_champion.get("gate", "none"),
        "retrains": graph.retrains,
        "retrains_blocked": graph.retrains_blocked,
        "failed_runs": len(graph.failed),
        "normal_days": len(normal),
        "normal_days_failing_a_check": len(failing),
        "flags_outside_before": mean(loop, before),
        "flags_outside_after": mean(loop, after),
        "first_alone_after": mean(alone, after),
        "alerts_per_normal_day": mean(normal_alerts, normal),
        "normal_days_over_2x": int((normal_alerts > budget).sum()),
        "champions": graph.champions,
        "decisions": decisions(home),
        "failing": why,
        "per_day": {
            d: f"v{','.join(sorted(versions.get(d, set())))} {int(loop[d])}/{int(alone[d])}"
            + (" W" if d in marked else "")
            for d in days
        },
    }


def main_graph(series: list[str], first_week: int, max_days: int | None) -> list[dict]:
    import tempfile

    out = []
    with tempfile.TemporaryDirectory(prefix="pynomaly-monitoring-graph-") as tmp:
        for i, name in enumerate(series):
            result = graph_series(name, Path(tmp) / str(i), first_week, max_days)
            out.append(result)
            print(json.dumps(result), flush=True)
    table = pd.DataFrame(out).drop(columns=["per_day", "failing", "champions", "decisions"])
    print(table.to_markdown(index=False))
    print(
        "per_day: model version(s) of the exported rows, alerts outside the windows by the loop / "
        "by the first champion left alone, W: a labelled window touches the day"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", nargs="*", help="NAB files (default: every realTweets series)")
    parser.add_argument("--days", type=int, default=30, help="whole days per series (default 30)")
    parser.add_argument(
        "--train-days", type=int, default=14, help="training window (default 14, last one held out)"
    )
    parser.add_argument(
        "--graph",
        action="store_true",
        help="the self-healing loop through the asset graph (see the module docstring)",
    )
    parser.add_argument(
        "--first-week", type=int, default=7, help="--graph: days of the first training (default 7)"
    )
    parser.add_argument(
        "--max-days", type=int, default=None, help="--graph: only the first N days of each series"
    )
    args = parser.parse_args(argv)
    if not NAB.is_dir():
        print(f"{NAB}: shared NAB data absent; see ../shared/datasets/timeseries/README.md")
        return 1
    if args.graph:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_graph(args.series or list(GRAPH_SERIES), args.first_week, args.max_days)
        return 0
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
