"""The embedded real demo feed through the asset graph: a champion on its first training, every day scored.

``pynomaly_assets/feeds/nab_ec2_cpu.yaml`` ships eight days of a real NAB series (the CPU of an
AWS EC2 server every 5 minutes, MIT licence; ``nab_ec2_cpu/SOURCE.md``) beside the synthetic
demo, configured as the README's feed example. Run from the shipped feeds folder as a new user
runs it (the files inside the package, no shared data needed): ingest every day (one run over
the eight days, as the UI backfills the single-run ingest assets), the first training on its
first ``training.window_days`` days, score every day (a run per day). Asserted from the
exported warehouse table: a champion was promoted, every day and every row is exported, and on
the days before NAB's labelled window the alerts stay within twice the configured
contamination while the window's days hold more of them.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pynomaly_core.data.config import load_feed
from tests.assets.helpers import (
    definitions_for,
    failure_message,
    latest_metadata,
    run_range,
    seed_mlflow,
)
from tests.assets.real_series import QUIET, pynomaly_home, read_scores, run

FEEDS = Path(__file__).resolve().parents[2] / "pynomaly_assets" / "feeds"
FEED = "nab_ec2_cpu"
#: NAB's labelled anomaly window of the series (SOURCE.md; NAB's combined_windows.json)
WINDOW = (pd.Timestamp("2014-04-15 07:24"), pd.Timestamp("2014-04-16 11:54"))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("real_feed")
    feed = load_feed(FEEDS / f"{FEED}.yaml")
    days = sorted(p.stem for p in (FEEDS / FEED).glob("*.csv"))
    rows = {d: len(pd.read_csv(FEEDS / FEED / f"{d}.csv")) for d in days}
    out: dict = {"days": days, "rows": rows, "contamination": feed.detector.contamination}
    seed_mlflow(root / "home")
    with pynomaly_home(root / "home"), dg.instance_for_test(temp_dir=str(root)) as instance:
        defs = definitions_for(FEEDS)  # inside: the stores are resolved from $PYNOMALY_HOME
        failed = {}
        ingest = run_range(defs, instance, f"{FEED}__ingest", days[0], days[-1], QUIET)
        if not ingest.success:
            failed["ingest"] = failure_message(ingest)
        end = days[feed.training.window_days - 1]
        train = run(
            defs,
            instance,
            f"{FEED}__train",
            run_config={"ops": {f"{FEED}__training_window": {"config": {"end_date": end}}}},
        )
        if not train.success:
            failed["train"] = failure_message(train)
        for day in days:
            result = run(defs, instance, f"{FEED}__score", day)
            if not result.success:
                failed[f"score {day}"] = failure_message(result)
        out["failed"] = failed
        out["champion"] = latest_metadata(instance, [FEED, "champion"])
        out["table"] = read_scores(root / "home", FEED)
    return out


def test_the_real_feed_gets_a_champion_on_first_training_and_scores_every_day(shipped):
    assert shipped["failed"] == {}
    champion = shipped["champion"]
    assert champion["decision"] == "promoted" and champion["champion_version"] != "none"
    assert champion["gate"] in ("passed", "weak first champion"), champion
    table = shipped["table"]
    assert sorted(table["partition_date"].astype(str).unique()) == shipped["days"]
    per_day = table.groupby(table["partition_date"].astype(str)).size().to_dict()
    assert per_day == shipped["rows"]


def test_alerts_before_the_labelled_window_stay_within_twice_the_contamination(shipped):
    """The days before NAB's labelled window are the server's normal (the champion was trained on
    them): alerts stay within twice ``contamination``, and the window's days hold more. (After the
    incident the server runs a few points lower, so the day after the window is flagged more until
    a retrain: the monitoring loop's job, off in this test.)"""
    table = shipped["table"]
    times = table["event_time"].dt.tz_localize(None)
    day = table["partition_date"].astype(str)
    window_days = set(day[(times >= WINDOW[0]) & (times <= WINDOW[1])])
    normal = table[day < min(window_days)]
    alerts = normal.groupby(normal["partition_date"].astype(str))["is_anomaly"].sum()
    budget = 2 * shipped["contamination"] * pd.Series(shipped["rows"])[alerts.index]
    report = {"alerts": alerts.to_dict(), "budget": budget.to_dict()}
    assert len(alerts) >= 4 and (alerts <= budget).all(), report
    in_window = table[day.isin(window_days)]
    per_window_day = in_window["is_anomaly"].sum() / len(window_days)
    assert per_window_day > alerts.mean(), (per_window_day, report)
