"""A feed of one real metric, configured as in the README, through the asset graph with the monitoring loop on.

The series is a shared NAB file (``realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv``: the CPU of a
server every 5 minutes for 14 days, one labelled anomaly window, MIT licence), written by the test
as one CSV file per day. On it every candidate's label-free ROC-AUC is below 0.4 (a CPU pinned near
100 %, where synthetic anomalies look normal): the case in which the promotion gate used to refuse
the first champion and the feed never scored. ``$PYNOMALY_REAL_SERIES`` runs the same story on
another NAB file (e.g. ``realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv``, whose level drops
after its second window). The feed is the README's example (a CSV source, ``detector: IForest``,
``contamination: 0.01``), with one change: ``monitoring.cooldown_hours: 0``, because the test
plays fourteen days in minutes and the default 12-hour cooldown, which is shorter than a day,
would otherwise hold back every retrain after the first.

The story a new user lives through: the first week is ingested and the first training promotes a
champion whatever its (label-free) evidence; every day is scored; then each following day is
ingested and scored, and the retraining sensor is evaluated as the daemon would, its retrains and
rescorings run. Measured from the exported warehouse table: alerts per day outside the labelled
windows on the days scored after the sensor acted, against the first champion left alone on the
same days (its model scoring the same validated partitions), and on the days before. Skipped
when the shared data is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.assets.helpers import (
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)
from tests.assets.real_series import Daemon

TIMESERIES = Path(
    os.environ.get(
        "PYNOMALY_TIMESERIES_DIR",
        Path(__file__).resolve().parents[3] / "shared" / "datasets" / "timeseries",
    )
)
#: the shared NAB series the story runs on (see the module docstring)
WEAK_SERIES = "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv"
SERIES = os.environ.get("PYNOMALY_REAL_SERIES", WEAK_SERIES)
FEED = "cpu"
FIRST_WEEK = 7

pytestmark = pytest.mark.skipif(
    not (TIMESERIES / "nab" / SERIES).exists(),
    reason=f"shared NAB data not found at {TIMESERIES / 'nab'} ($PYNOMALY_TIMESERIES_DIR)",
)


def readme_feed(start: str) -> dict:
    """The README's feed example, for this CSV series starting on day ``start``."""
    return {
        "name": FEED,
        "source": {"kind": "csv", "path": "landing/cpu/{date}/*.csv"},
        "event_time": "timestamp",
        "record_key": "reading_id",
        "features": [{"name": "value", "type": "float", "min": 0}],
        "partitioning": {"start_date": start},
        "detector": {"name": "IForest", "contamination": 0.01},
        "monitoring": {"cooldown_hours": 0},
    }


def write_days(series: pd.DataFrame, feeds: Path) -> list[str]:
    """One CSV file per UTC day, as a landing zone would hold them; the days, in order."""
    days = series["timestamp"].str[:10]
    for day, rows in series.groupby(days):
        folder = feeds / "landing" / "cpu" / day
        folder.mkdir(parents=True, exist_ok=True)
        rows.to_csv(folder / "part-0.csv", index=False)
    return sorted(days.unique())


def labelled_windows() -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    windows = json.loads((TIMESERIES / "nab" / "combined_windows.json").read_text())[SERIES]
    return [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in windows]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_cpu")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    for var in ("PYNOMALY_WAREHOUSE_URL", "PYNOMALY_MLFLOW_TRACKING_URI", "PYNOMALY_REPORTS_DIR"):
        mp.delenv(var, raising=False)
    series = pd.read_csv(TIMESERIES / "nab" / SERIES)
    series.insert(0, "reading_id", range(len(series)))
    feeds = root / "feeds"
    days = write_days(series, feeds)
    write_feed(feeds, readme_feed(days[0]))
    defs = definitions_for(feeds)
    out: dict = {"days": days, "scored": {}, "rows": len(series)}
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        for day in days[:FIRST_WEEK]:
            result = run_job(defs, instance, f"{FEED}__ingest", day)
            assert result.success, failure_message(result)
        out["train"] = run_job(defs, instance, f"{FEED}__train")
        out["first_champion"] = latest_metadata(instance, [FEED, "champion"])
        from pynomaly_core.storage import JsonStore

        out["first_value"] = JsonStore(root / "home" / "values").read([FEED, "champion"])
        for day in days[:FIRST_WEEK]:
            out["scored"][day] = run_job(defs, instance, f"{FEED}__score", day)
        daemon = Daemon(defs, instance, FEED)
        daemon.tick()
        for day in days[FIRST_WEEK:]:
            for job in ("ingest", "score"):
                result = run_job(defs, instance, f"{FEED}__{job}", day)
                out["scored" if job == "score" else "ingested"] = {
                    **out.get("scored" if job == "score" else "ingested", {}),
                    day: result,
                }
            daemon.tick()
        out["daemon"] = daemon
        out["instance"] = instance
        out["table"] = pd.read_sql(
            "SELECT partition_date, event_time, is_anomaly, model_version FROM anomaly_scores WHERE feed = 'cpu'",
            sa.create_engine(f"sqlite:///{root / 'home' / 'warehouse.db'}"),
        )
        out["checks"] = {day: check_results(instance, r.run_id) for day, r in out["scored"].items()}
        out["left_alone"] = left_alone(out["first_value"], root / "home", days)
        out["champions"] = [
            {
                k: meta[k].value
                for k in ("decision", "champion_version", "champion_training_days", "gate")
                if k in meta
            }
            for r in reversed(
                instance.fetch_materializations(dg.AssetKey([FEED, "champion"]), limit=100).records
            )
            for meta in [r.asset_materialization.metadata]
        ]
        yield out
    mp.undo()


def left_alone(first_value: dict, home: Path, days: list[str]) -> pd.DataFrame:
    """What the first champion, left alone, flags on every validated day (the counterfactual)."""
    from pynomaly_core.lifecycle import ChampionRecord
    from pynomaly_core.storage import FrameStore

    model = ChampionRecord.from_value(first_value).load()
    frames = []
    for day in days:
        validated = FrameStore(home / "frames").read([FEED, "validated"], day)
        frames.append(
            pd.DataFrame(
                {
                    "partition_date": day,
                    "event_time": validated["timestamp"],
                    "is_anomaly": model.decision_function(validated) > model.threshold_,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def flags_outside_windows(table: pd.DataFrame) -> pd.Series:
    """Alerts per day on rows outside every labelled window."""
    times = pd.to_datetime(table["event_time"], utc=True).dt.tz_localize(None)
    inside = pd.Series(False, index=table.index)
    for start, end in labelled_windows():
        inside |= (times >= start) & (times <= end)
    flagged = table["is_anomaly"].astype(bool) & ~inside
    return flagged.groupby(table["partition_date"].astype(str)).sum()


def test_a_real_metric_configured_as_in_the_readme_gets_a_champion_and_scores_every_day(real):
    train = real["train"]
    assert train.success, failure_message(train)
    champion = real["first_champion"]
    assert champion["champion_version"] != "none" and champion["decision"] == "promoted"
    # a weak first champion is a warning, never a feed without scores
    assert champion["gate"] in ("passed", "weak first champion"), champion
    if SERIES == WEAK_SERIES:  # the case: every candidate below lifecycle.min_auc
        assert champion["gate"] == "weak first champion", champion
        records = real["instance"].all_logs(
            train.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        gate = next(r.dagster_event.event_specific_data for r in records)
        assert gate.passed is False and gate.severity == dg.AssetCheckSeverity.WARN
        assert gate.description.startswith("first champion promoted on weak evidence: ROC-AUC ")
    failed = {day: failure_message(r) for day, r in real["scored"].items() if not r.success}
    assert failed == {}
    assert real["daemon"].failed == []  # a retrain refused by the promotion gate is in .blocked
    exported = real["table"]
    assert sorted(exported["partition_date"].astype(str).unique()) == real["days"]
    assert len(exported) == real["rows"]


def test_flags_outside_the_labelled_windows_do_not_grow_after_the_sensor_acts(real):
    """The issue's failure: retraining on the latest week and rescoring every day flagged ~47 rows a
    day outside the windows against ~3.5 for the first champion left alone. Without hindsight the
    days the first champion scored keep its scores, and on the days scored by champions the sensor
    promoted the loop flags no more outside the windows than the first champion left alone would
    (or than the contamination's share of the rows)."""
    table = real["table"]
    first = str(real["first_champion"]["champion_version"])
    loop = flags_outside_windows(table)
    alone = flags_outside_windows(real["left_alone"])
    versions = table.groupby(table["partition_date"].astype(str))["model_version"].agg(
        lambda v: set(v.astype(str))
    )
    before = [d for d in loop.index if versions[d] == {first}]
    after = [d for d in loop.index if first not in versions[d]]
    report = {
        "first_gate": real["first_champion"]["gate"],
        "champions": real["champions"],
        "retrains": sum(r.job_name.endswith("__retrain") for r in real["daemon"].requests),
        "retrains_blocked_by_gate": len(real["daemon"].blocked),
        "rescores": [
            r.partition_key for r in real["daemon"].requests if r.job_name.endswith("__score")
        ],
        "per_day": {
            d: {
                "version": sorted(versions[d]),
                "flags_outside": int(loop[d]),
                "first_champion_alone": int(alone[d]),
            }
            for d in loop.index
        },
        "before_sensor_per_day": round(float(loop[before].mean()), 2),
        "after_sensor_per_day": round(float(loop[after].mean()), 2) if after else None,
        "first_champion_alone_on_those_days": round(float(alone[after].mean()), 2)
        if after
        else None,
        "check_failures": {
            d: [k for k, ok in c.items() if ok is False] for d, c in real["checks"].items()
        },
    }
    print(json.dumps(report, indent=1))
    # the first week keeps the first champion's scores: no later model rescored a day it had seen
    assert all(versions[d] == {first} for d in real["days"][:FIRST_WEEK])
    # before the sensor acted the table holds exactly what the first champion flags
    assert (loop[before] == alone[before]).all()
    if after:
        # no more than the first champion left alone, or than a normal day's share by design
        # (contamination 0.01 of the day's rows): with the champion refitted on its whole window
        # (lifecycle.refit_on_window), 825cc2's later champions flag 1.0 a day outside the windows
        # against the first champion's 0.6 (5 rows against 3 in five days of 288): counts that
        # small are noise, not the issue's ~47 a day against ~3.5
        budget = 0.01 * table.groupby(table["partition_date"].astype(str)).size()[after].mean()
        assert loop[after].mean() <= max(alone[after].mean(), budget), report
