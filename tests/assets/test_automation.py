"""Declarative automation (``schedules.trigger: automation``): a day's stages follow their upstream
partition when it updates, on a real instance through :func:`dagster.evaluate_automation_conditions`;
cron and arrival feeds keep no condition."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pynomaly_assets.defs.jobs import SCORE_STAGES
from tests.assets.helpers import definitions_for, failure_message, run_job, write_feed

FEED = "auto_feed"
TRAINING_DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
ARRIVED = "2026-11-04"  # lands after the champion is trained: its downstream must follow
REJECTED = "2026-11-05"  # too few rows: validated's blocking min_rows check fails
UNTOUCHED = "2026-11-06"  # never ingested
STAGES = ("raw", "validated", *SCORE_STAGES)


def feed_dict(name: str = FEED, **schedules) -> dict:
    return {
        "name": name,
        "source": {"kind": "csv", "path": "landing/{date}.csv"},
        "event_time": "ts",
        "record_key": "id",
        "features": [{"name": "x", "type": "float"}, {"name": "y", "type": "float"}],
        "partitioning": {"start_date": TRAINING_DAYS[0]},
        # a cron that does not tick between two evaluations: only followed updates are requested
        "schedules": {"trigger": "automation", "daily_cron": "0 0 1 1 *", **schedules},
        "validation": {"min_rows": 10},
        "training": {"window_days": 3, "min_rows": 50},
        "detector": {"name": "IForest", "contamination": 0.02},
        "lifecycle": {
            "candidates": ["IForest"],
            "max_candidates": 1,
            "n_boot": 100,
            "synthetic_anomalies": 20,
            "min_auc": 0.0,
        },
        "explanations": {"top_k": 0},
    }


def day_csv(day: str, rows: int = 60) -> str:
    rng = np.random.default_rng(int(day[-2:]))
    x = rng.normal(0, 1, rows)
    start = pd.Timestamp(day, tz="UTC")
    return pd.DataFrame(
        {
            "id": [f"{day}-{i}" for i in range(rows)],
            "ts": [(start + pd.Timedelta(minutes=24 * i)).isoformat() for i in range(rows)],
            "x": x.round(4),
            "y": (x + rng.normal(0, 0.2, rows)).round(4),
        }
    ).to_csv(index=False)


def requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, set]:
    """{stage: requested partition keys} of the feed's daily stages (stages with none left out)."""
    out = {s: set(result.get_requested_partitions(dg.AssetKey([FEED, s]))) for s in STAGES}
    return {s: keys for s, keys in out.items() if keys}


@pytest.fixture(scope="module")
def ticks(tmp_path_factory):
    """Train on three days, then evaluate the conditions around an arrival and its runs."""
    root = tmp_path_factory.mktemp("automation")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    for var in ("PYNOMALY_WAREHOUSE_URL", "PYNOMALY_MLFLOW_TRACKING_URI", "PYNOMALY_REPORTS_DIR"):
        mp.delenv(var, raising=False)
    feeds = root / "feeds"
    write_feed(feeds, feed_dict())
    landing = feeds / "landing"
    landing.mkdir()
    for day in [*TRAINING_DAYS, ARRIVED]:
        (landing / f"{day}.csv").write_text(day_csv(day))
    (landing / f"{REJECTED}.csv").write_text(day_csv(REJECTED, rows=5))
    defs = definitions_for(feeds)
    out: dict = {}
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        for day in TRAINING_DAYS:
            assert run_job(defs, instance, f"{FEED}__ingest", day).success
        window = {"ops": {f"{FEED}__training_window": {"config": {"end_date": TRAINING_DAYS[-1]}}}}
        trained = run_job(defs, instance, f"{FEED}__train", run_config=window)
        assert trained.success, failure_message(trained)

        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        out["first"] = requested(first)

        assert run_job(defs, instance, f"{FEED}__ingest", ARRIVED).success
        arrived = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        out["arrived"] = requested(arrived)
        # what the automation sensor would launch: the requested stages of the day
        scored = run_job(defs, instance, f"{FEED}__score", ARRIVED)
        assert scored.success, failure_message(scored)
        after = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=arrived.cursor
        )
        out["after_runs"] = requested(after)

        rejected = run_job(defs, instance, f"{FEED}__ingest", REJECTED)
        out["rejected_run_success"] = rejected.success
        out["rejected_validated"] = instance.get_latest_materialization_event(
            dg.AssetKey([FEED, "validated"])
        )
        out["after_rejected"] = requested(
            dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
        )
        yield out
    mp.undo()


def test_the_first_evaluation_requests_nothing_already_there(ticks):
    """Switching a feed to automation does not rescore the days that were there before."""
    assert ticks["first"] == {}


def test_an_ingested_day_requests_exactly_its_downstream_stages(ticks):
    assert ticks["arrived"] == {stage: {ARRIVED} for stage in SCORE_STAGES}


def test_after_the_requested_runs_a_second_evaluation_requests_nothing(ticks):
    assert ticks["after_runs"] == {}


def test_a_day_that_failed_a_blocking_validation_check_is_not_followed(ticks):
    assert not ticks["rejected_run_success"]
    # validated of the day was written (with its failed check), so it is not merely missing
    event = ticks["rejected_validated"]
    assert event is not None and event.asset_materialization.partition == REJECTED
    assert ticks["after_rejected"] == {}
    assert UNTOUCHED not in {k for keys in ticks["after_rejected"].values() for k in keys}


def test_raw_follows_the_daily_cron_for_the_day_that_ended(tmp_path):
    feeds = tmp_path / "feeds"
    write_feed(feeds, feed_dict(daily_cron="0 1 * * *"))
    defs = definitions_for(feeds)
    before = dt.datetime(2026, 11, 10, 0, 30, tzinfo=dt.UTC)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=before
        )
        ticked = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            evaluation_time=before + dt.timedelta(hours=1),
            cursor=first.cursor,
        )
    assert requested(first) == {}
    # the ended day alone; validated follows in the same tick (no champion yet: nothing scores)
    assert requested(ticked) == {"raw": {"2026-11-09"}, "validated": {"2026-11-09"}}


def test_the_automation_sensor_runs_by_default_and_targets_the_daily_stages(tmp_path):
    write_feed(tmp_path, feed_dict())
    defs = definitions_for(tmp_path)
    sensor = defs.resolve_sensor_def(f"{FEED}__automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    targeted = sensor.asset_selection.resolve(graph)
    assert targeted == {dg.AssetKey([FEED, s]) for s in STAGES}
    assert graph.get(dg.AssetKey([FEED, "champion"])).automation_condition is None
    # the cron-style schedule stays available (stopped) and the arrival sensor stays stopped
    assert defs.resolve_schedule_def(f"{FEED}__daily_schedule").cron_schedule == "0 0 1 1 *"
    arrival = defs.resolve_sensor_def(f"{FEED}__arrival_sensor")
    assert arrival.default_status == dg.DefaultSensorStatus.STOPPED


@pytest.mark.parametrize("trigger", ["cron", "arrival"])
def test_cron_and_arrival_feeds_get_no_automation(tmp_path, trigger):
    write_feed(tmp_path, feed_dict(trigger=trigger))
    defs = definitions_for(tmp_path)
    graph = defs.resolve_asset_graph()
    assert all(graph.get(key).automation_condition is None for key in graph.get_all_asset_keys())
    assert not [s for s in defs.sensors if isinstance(s, dg.AutomationConditionSensorDefinition)]
