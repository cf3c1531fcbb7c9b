"""An hourly feed (``partitioning.granularity: hourly``) runs end to end, one UTC hour a partition.

Real components: a Dagster instance, the PostgreSQL warehouse, the demo source. One module
fixture ingests four hours in one run, trains, ingests and scores two hours of the next day in
their own runs, then rescores and re-exports both hours in one run.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_assets.feed_context import FeedContext
from pynomaly_core.data.config import parse_feed
from tests.assets.helpers import (
    SMALL_DEMO,
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    range_tags,
    run_job,
    seed_mlflow,
    write_feed,
)
from tests.pg import temporary_database

pytestmark = pytest.mark.postgres

FEED = "hourly_demo"
HOURLY = {
    **SMALL_DEMO,
    "name": FEED,
    "source": {**SMALL_DEMO["source"], "machines": 4, "interval_minutes": 5},
    "partitioning": {"start_date": "2026-11-01", "granularity": "hourly"},
    "validation": {"min_rows": 1},
    "training": {"window_days": 1, "min_rows": 100},
    "lifecycle": {
        "min_labelled_anomalies": 10_000,
        "candidates": ["KNN"],
        "n_boot": 200,
        "synthetic_anomalies": 50,
    },
    "monitoring": {"normal_folds": 0},
    "explanations": {"top_k": 2},
}
#: 4 machines every 5 minutes: 48 readings an hour
PER_HOUR = 48
TRAIN_HOURS = ("2026-11-01-00:00", "2026-11-01-03:00")
SCORED = ["2026-11-02-00:00", "2026-11-02-01:00"]


@pytest.fixture(scope="module")
def hourly(tmp_path_factory):
    root = tmp_path_factory.mktemp("hourly")
    mp = pytest.MonkeyPatch()
    with temporary_database() as url:
        mp.setenv("PYNOMALY_HOME", str(root / "home"))
        mp.setenv("PYNOMALY_WAREHOUSE_URL", url)
        seed_mlflow(root / "home")
        write_feed(root / "feeds", HOURLY)
        defs = definitions_for(root / "feeds")
        with dg.instance_for_test(temp_dir=str(root)) as instance:
            results = {
                "ingest_day": defs.resolve_job_def(f"{FEED}__ingest").execute_in_process(
                    instance=instance, tags=range_tags(*TRAIN_HOURS), raise_on_error=False
                ),
                "train": run_job(
                    defs,
                    instance,
                    f"{FEED}__train",
                    run_config={
                        "ops": {f"{FEED}__training_window": {"config": {"end_date": "2026-11-01"}}}
                    },
                ),
            }
            for hour in SCORED:
                results[("ingest", hour)] = run_job(defs, instance, f"{FEED}__ingest", hour)
                results[("score", hour)] = run_job(defs, instance, f"{FEED}__score", hour)
            # both hours again in one run of the range-capable stages (a single-run backfill)
            results["rescore"] = defs.resolve_job_def(f"{FEED}__score").execute_in_process(
                instance=instance,
                tags=range_tags(*SCORED),
                asset_selection=[
                    dg.AssetKey([FEED, "anomaly_scores"]),
                    dg.AssetKey([FEED, "anomaly_table"]),
                ],
                raise_on_error=False,
            )
            yield {"instance": instance, "results": results, "url": url, "defs": defs}
    mp.undo()


def test_hourly_feed_gets_hourly_partitions():
    fc = FeedContext(parse_feed(HOURLY))
    assert isinstance(fc.partitions_def, dg.HourlyPartitionsDefinition)
    assert fc.partitions_def.get_first_partition_key() == "2026-11-01-00:00"
    daily = FeedContext(parse_feed(SMALL_DEMO))
    assert isinstance(daily.partitions_def, dg.DailyPartitionsDefinition)
    assert daily.feed.partitioning.granularity == "daily"


def test_every_hourly_run_succeeds(hourly):
    failed = {k: failure_message(r) for k, r in hourly["results"].items() if not r.success}
    assert failed == {}


def test_each_hour_holds_only_its_rows(hourly):
    instance = hourly["instance"]
    rows = [
        latest_metadata(instance, [FEED, "raw"], f"2026-11-01-{h:02d}:00")["dagster/row_count"]
        for h in range(4)
    ]
    assert rows == [PER_HOUR] * 4
    # training reads the day's materialized hours, not 24 copies of the day
    window = latest_metadata(instance, [FEED, "training_window"])
    assert window["rows_before_sampling"] == 4 * PER_HOUR
    assert window["partitions_used"] == [f"2026-11-01-{h:02d}:00" for h in range(4)]


def test_scored_hours_reach_the_warehouse_side_by_side(hourly):
    engine = sa.create_engine(hourly["url"])
    with engine.connect() as conn:
        stored = pd.read_sql(
            sa.text("SELECT partition_date, event_time FROM anomaly_scores WHERE feed = :feed"),
            conn,
            params={"feed": FEED},
        )
    engine.dispose()
    # both hours share the day's partition_date; each export replaced only its own hour's rows
    assert stored["partition_date"].astype(str).unique().tolist() == ["2026-11-02"]
    hours = pd.to_datetime(stored["event_time"], utc=True).dt.hour.value_counts().to_dict()
    assert hours == {0: PER_HOUR, 1: PER_HOUR}


def test_one_run_rescores_and_exports_both_hours_each_recorded(hourly):
    instance, run = hourly["instance"], hourly["results"]["rescore"]
    found = [
        r.dagster_event.event_specific_data
        for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert {(e.partition, e.passed) for e in found if e.partition} == {(h, True) for h in SCORED}
    assert check_results(instance, run.run_id)["rows_match_scores"] is True
    for hour in SCORED:
        scores = latest_metadata(instance, [FEED, "anomaly_scores"], hour)
        assert scores["dagster/row_count"] == PER_HOUR
        assert scores["previous_model_version"] == scores["model_version"]


def test_monitoring_runs_per_hour(hourly):
    instance = hourly["instance"]
    for hour in SCORED:
        scores = latest_metadata(instance, [FEED, "anomaly_scores"], hour)
        assert scores["dagster/row_count"] == PER_HOUR
        assert latest_metadata(instance, [FEED, "drift_report"], hour)
        assert latest_metadata(instance, [FEED, "detector_performance"], hour)


def test_hourly_schedule_requests_the_hour_that_ended(hourly):
    import datetime as dt

    schedule = hourly["defs"].resolve_schedule_def(f"{FEED}__daily_schedule")
    assert schedule.cron_schedule == "10 * * * *"
    with dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 2, 14, 10, tzinfo=dt.UTC),
        repository_def=hourly["defs"].get_repository_def(),
    ) as context:
        request = schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2026-11-02-13:00"
