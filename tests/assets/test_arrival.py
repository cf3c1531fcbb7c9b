"""Runs on arrival: new or changed files of a partition start its daily run once per file version,
for local and S3 sources; a Parquet feed on S3 runs end to end (ingest, train, score, export) and
a SQL feed on PostgreSQL through ingestion and validation; a day that has not landed by
``freshness.expected_by`` fails the feed's freshness check."""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import make_engine, warehouse_url_default
from tests.assets.helpers import (
    definitions_for,
    failure_message,
    run_job,
    run_range,
    seed_mlflow,
    write_feed,
)

TODAY = dt.datetime.now(dt.UTC).date()
#: the feed's partitions: the last five days that ended
START = TODAY - dt.timedelta(days=5)


def days_ago(n: int) -> str:
    return (TODAY - dt.timedelta(days=n)).isoformat()


def feed_dict(name: str, path: str, **changes) -> dict:
    return {
        "name": name,
        "source": {"kind": "csv", "path": path},
        "event_time": "ts",
        "record_key": "id",
        "features": [{"name": "x", "type": "float"}, {"name": "y", "type": "float"}],
        "partitioning": {"start_date": START.isoformat()},
        "schedules": {"trigger": "arrival", "arrival_lookback_days": 3},
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
        **changes,
    }


def day_frame(day: str, rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """A day of two correlated readings, one every 24 minutes, with two outliers."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    y = x + rng.normal(0, 0.2, rows)
    x[:2], y[:2] = 6.0, -6.0
    start = pd.Timestamp(day, tz="UTC")
    frame = pd.DataFrame(
        {
            "id": [f"{day}-{i}" for i in range(rows)],
            "ts": [(start + pd.Timedelta(minutes=24 * i)).isoformat() for i in range(rows)],
            "x": x.round(4),
            "y": y.round(4),
        }
    )
    return frame


def day_csv(day: str, rows: int = 60, seed: int = 0) -> bytes:
    return day_frame(day, rows, seed).to_csv(index=False).encode()


def day_parquet(day: str, rows: int = 60, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    day_frame(day, rows, seed).to_parquet(buffer, index=False)
    return buffer.getvalue()


def tick(defs: dg.Definitions, instance, name: str, cursor: str | None):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, sensor_name=name
    ) as context:
        return sensor.evaluate_tick(context)


def test_a_landed_or_rewritten_local_file_runs_its_partition_once_per_version(tmp_path):
    feeds = tmp_path / "feeds"
    landing = feeds / "landing"
    landing.mkdir(parents=True)
    write_feed(feeds, feed_dict("local_feed", "landing/{date}/*.csv"))
    defs = definitions_for(feeds)
    name = "local_feed__arrival_sensor"
    sensor = defs.resolve_sensor_def(name)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "local_feed__daily"
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first = tick(defs, instance, name, None)
        assert first.run_requests == [] and "no new or changed files" in first.skip_message

        (landing / days_ago(1)).mkdir()
        (landing / days_ago(1) / "part-0.csv").write_bytes(day_csv(days_ago(1)))
        landed = tick(defs, instance, name, first.cursor)
        (request,) = landed.run_requests
        assert request.partition_key == days_ago(1)
        assert request.tags["pynomaly/trigger"] == "arrival"
        assert request.tags["pynomaly/arrived_files"].endswith("part-0.csv")

        assert tick(defs, instance, name, landed.cursor).run_requests == []  # same version

        # a second file lands for the same day, and an older day gets its file
        (landing / days_ago(1) / "part-1.csv").write_bytes(day_csv(days_ago(1), seed=1))
        (landing / days_ago(3)).mkdir()
        (landing / days_ago(3) / "part-0.csv").write_bytes(day_csv(days_ago(3)))
        more = tick(defs, instance, name, landed.cursor)
        assert sorted(r.partition_key for r in more.run_requests) == [days_ago(3), days_ago(1)]
        again = next(r for r in more.run_requests if r.partition_key == days_ago(1))
        assert again.run_key != request.run_key
        assert again.tags["pynomaly/arrived_files"].endswith("part-1.csv")

        # a rewritten file is a new version: its day runs again
        path = landing / days_ago(3) / "part-0.csv"
        path.write_bytes(day_csv(days_ago(3), seed=2))
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        rewritten = tick(defs, instance, name, more.cursor)
        assert [r.partition_key for r in rewritten.run_requests] == [days_ago(3)]


def test_cron_feeds_keep_the_schedule_and_the_arrival_sensor_stays_stopped(tmp_path):
    feeds = tmp_path / "feeds"
    write_feed(feeds, feed_dict("cron_feed", "landing/{date}.csv", schedules={}))
    defs = definitions_for(feeds)
    assert (
        defs.resolve_sensor_def("cron_feed__arrival_sensor").default_status
        == dg.DefaultSensorStatus.STOPPED
    )
    assert defs.resolve_schedule_def("cron_feed__daily_schedule").cron_schedule == "0 1 * * *"


def test_arrival_on_a_sql_source_is_refused_with_the_setting_named(tmp_path):
    from pynomaly_core.data.config import FeedConfigError, load_feed

    feed = feed_dict("sql_feed", "x")
    feed["source"] = {
        "kind": "sql",
        "query": "SELECT * FROM t WHERE ts >= :partition_start AND ts < :partition_end",
    }
    with pytest.raises(FeedConfigError, match="schedules.trigger: 'arrival' watches files"):
        load_feed(write_feed(tmp_path, feed))


def test_a_day_not_landed_by_expected_by_fails_the_freshness_check(tmp_path):
    feeds = tmp_path / "feeds"
    (feeds / "landing").mkdir(parents=True)
    # the deadline has passed for yesterday's partition whatever the time of day now
    write_feed(
        feeds, feed_dict("fresh_feed", "landing/{date}.csv", freshness={"expected_by": "00:00"})
    )
    defs = definitions_for(feeds)
    check_key = dg.AssetCheckKey(dg.AssetKey(["fresh_feed", "raw"]), "freshness_check")
    job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(check_key))
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    assert defs.resolve_sensor_def("fresh_feed__freshness_sensor") is not None
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        late = defs.resolve_job_def("freshness").execute_in_process(instance=instance)
        (evaluation,) = late.get_asset_check_evaluations()
        assert not evaluation.passed

        (feeds / "landing" / f"{days_ago(1)}.csv").write_bytes(day_csv(days_ago(1)))
        assert run_job(defs, instance, "fresh_feed__ingest", days_ago(1)).success
        landed = defs.resolve_job_def("freshness").execute_in_process(instance=instance)
        (evaluation,) = landed.get_asset_check_evaluations()
        assert evaluation.passed


@pytest.mark.slow
def test_a_parquet_feed_on_s3_runs_end_to_end_and_a_landing_file_triggers_its_day(
    tmp_path, s3_server, monkeypatch, isolated_home
):
    seed_mlflow(isolated_home)
    bucket = f"landing-{uuid.uuid4().hex[:12]}"
    s3_server.env(monkeypatch)
    s3_server.bucket(bucket)
    monkeypatch.setenv("PYNOMALY_REMOTE_SOURCES", f"s3://{bucket}/feeds/")
    feeds = tmp_path / "feeds"
    path = f"s3://{bucket}/feeds/s3_feed/{{date}}/*.parquet"
    write_feed(feeds, {**feed_dict("s3_feed", path), "source": {"kind": "parquet", "path": path}})

    def land(n: int, seed: int) -> None:
        key = f"feeds/s3_feed/{days_ago(n)}/part-0.parquet"
        s3_server.put(bucket, key, day_parquet(days_ago(n), seed=seed))

    for n in (5, 4, 3):
        land(n, seed=n)
    defs = definitions_for(feeds)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        # the three landed days in one run (a single-run backfill of the ingest assets)
        ingest = run_range(defs, instance, "s3_feed__ingest", days_ago(5), days_ago(3))
        assert ingest.success, failure_message(ingest)
        config = {"ops": {"s3_feed__training_window": {"config": {"end_date": days_ago(3)}}}}
        assert run_job(defs, instance, "s3_feed__train", run_config=config).success

        name = "s3_feed__arrival_sensor"
        cursor = tick(defs, instance, name, None).cursor  # day -3 is there already
        land(1, seed=9)
        (request,) = tick(defs, instance, name, cursor).run_requests
        assert request.partition_key == days_ago(1)
        assert run_job(defs, instance, "s3_feed__daily", request.partition_key).success

    engine = make_engine(warehouse_url_default())
    with engine.connect() as conn:
        exported = pd.read_sql(
            sa.text("SELECT * FROM anomaly_scores WHERE feed = 's3_feed' ORDER BY record_key"),
            conn,
        )
    engine.dispose()
    assert set(exported["partition_date"].astype(str)) == {days_ago(1)}
    assert len(exported) == 60
    top = exported.sort_values("score", ascending=False)["record_key"].head(2)
    assert set(top) == {f"{days_ago(1)}-0", f"{days_ago(1)}-1"}  # the two outliers score highest


@pytest.mark.postgres
def test_a_sql_feed_on_postgresql_is_ingested_and_validated_through_the_graph(
    tmp_path, monkeypatch
):
    from tests.pg import temporary_database

    day = days_ago(2)
    frame = day_frame(day, rows=20)
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame.loc[5, "x"] = None  # x is not nullable: this row goes to quarantine
    with temporary_database("pynomaly_source") as url:
        source = sa.create_engine(url)
        frame.to_sql("readings", source, index=False)
        # a row of the next day: the partition window must leave it out
        late = day_frame(days_ago(1), rows=1)
        late["ts"] = pd.to_datetime(late["ts"])
        late.to_sql("readings", source, index=False, if_exists="append")
        source.dispose()
        monkeypatch.setenv("READINGS_DB", url)
        feed = feed_dict("sql_feed", "unused", schedules={})
        feed["source"] = {
            "kind": "sql",
            "url_env": "READINGS_DB",
            "query": "SELECT id, ts, x, y FROM readings "
            "WHERE ts >= :partition_start AND ts < :partition_end ORDER BY id",
        }
        write_feed(tmp_path / "feeds", feed)
        defs = definitions_for(tmp_path / "feeds")
        assert "sql_feed__arrival_sensor" not in {s.name for s in defs.sensors}
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            result = run_job(defs, instance, "sql_feed__ingest", day)
            assert result.success
            rows = {
                e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
                for e in result.get_asset_materialization_events()
                if "dagster/row_count" in e.materialization.metadata
            }
    assert rows["raw"] == 20 and rows["validated"] == 19
    engine = make_engine(warehouse_url_default())
    with engine.connect() as conn:
        quarantined = conn.execute(
            sa.text("SELECT record_key, column_name FROM quarantine WHERE feed = 'sql_feed'")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in quarantined] == [(f"{day}-5", "x")]
