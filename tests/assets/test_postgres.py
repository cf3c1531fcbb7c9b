"""The graph on real PostgreSQL: warehouse and Dagster instance (the production profile docker/dagster.yaml) both on the server."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.assets.helpers import (
    SMALL_DEMO,
    check_results,
    definitions_for,
    failure_message,
    run_job,
    write_feed,
)
from tests.pg import temporary_database

REPO = Path(__file__).resolve().parents[2]
FEED = SMALL_DEMO["name"]
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_env(tmp_path, monkeypatch):
    with (
        temporary_database("pynomaly_wh") as warehouse_url,
        temporary_database("pynomaly_dagster") as dagster_url,
    ):
        monkeypatch.setenv("PYNOMALY_WAREHOUSE_URL", warehouse_url)
        monkeypatch.setenv("PYNOMALY_WAREHOUSE_SCHEMA", "anomalies")
        # dagster-postgres binds NOTIFY parameters client-side, which only psycopg2 does;
        # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, so name the driver explicitly
        monkeypatch.setenv(
            "PYNOMALY_DAGSTER_PG_URL",
            dagster_url.replace("postgresql+psycopg://", "postgresql+psycopg2://"),
        )
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "docker" / "dagster.yaml", home / "dagster.yaml")
        monkeypatch.setenv("PYNOMALY_DAGSTER_STORAGE", str(tmp_path / "dagster_storage"))
        write_feed(tmp_path / "feeds", SMALL_DEMO)
        defs = definitions_for(tmp_path / "feeds")
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            yield {
                "defs": defs,
                "instance": instance,
                "warehouse": sa.create_engine(warehouse_url),
                "dagster_db": sa.create_engine(dagster_url),
            }
        finally:
            instance.dispose()


def test_graph_runs_on_postgres_and_rerun_leaves_one_copy(postgres_env):
    env = postgres_env
    assert type(env["instance"].run_storage).__name__ == "PostgresRunStorage"
    for day in DAYS:
        result = run_job(env["defs"], env["instance"], f"{FEED}__ingest", day)
        assert result.success, failure_message(result)
        assert all(check_results(env["instance"], result.run_id).values())
    train = run_job(env["defs"], env["instance"], f"{FEED}__train")
    assert train.success, failure_message(train)
    for day in DAYS:
        scored = run_job(env["defs"], env["instance"], f"{FEED}__score", day)
        assert scored.success, failure_message(scored)

    rerun = run_job(env["defs"], env["instance"], f"{FEED}__score", DAYS[0])
    assert rerun.success, failure_message(rerun)

    with env["warehouse"].connect() as conn:
        per_day = dict(
            conn.execute(
                sa.text(
                    "SELECT partition_date::text, COUNT(*) FROM anomalies.anomaly_scores WHERE feed = :f "
                    "GROUP BY partition_date"
                ),
                {"f": FEED},
            ).all()
        )
        distinct_keys = conn.execute(
            sa.text(
                "SELECT COUNT(DISTINCT record_key) FROM anomalies.anomaly_scores WHERE partition_date = :d"
            ),
            {"d": DAYS[0]},
        ).scalar_one()
        run_ids = (
            conn.execute(
                sa.text(
                    "SELECT DISTINCT run_id FROM anomalies.anomaly_scores WHERE partition_date = :d"
                ),
                {"d": DAYS[0]},
            )
            .scalars()
            .all()
        )
        summary_rows = conn.execute(
            sa.text("SELECT COUNT(*) FROM anomalies.anomaly_daily_summary")
        ).scalar_one()
    assert per_day == {d: 2 * 96 for d in DAYS}
    assert distinct_keys == 2 * 96
    assert run_ids == [rerun.run_id]
    assert summary_rows == len(DAYS)

    # the runs and materializations live in the Dagster database on the server
    with env["dagster_db"].connect() as conn:
        runs = conn.execute(sa.text("SELECT COUNT(*) FROM runs")).scalar_one()
    assert runs == len(DAYS) * 2 + 2
    materialized = env["instance"].get_materialized_partitions(dg.AssetKey([FEED, "anomaly_table"]))
    assert materialized == set(DAYS)


def test_sensor_and_weekly_maintenance_on_postgres(postgres_env):
    """Check-history queries of the sensor and the weekly assets on the PostgreSQL instance and warehouse."""
    env = postgres_env
    instance, defs = env["instance"], env["defs"]
    for day in DAYS:
        assert run_job(defs, instance, f"{FEED}__ingest", day).success
    assert run_job(defs, instance, f"{FEED}__train").success
    for day in DAYS:
        scored = run_job(defs, instance, f"{FEED}__score", day)
        assert scored.success, failure_message(scored)
        checks = check_results(instance, scored.run_id)
        assert {"drift_within_bounds", "performance_not_degraded"} <= set(checks)

    sensor = defs.resolve_sensor_def(f"{FEED}__retrain_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs) as ctx:
        tick = sensor.evaluate_tick(ctx)
    # calm days scored by the model trained on them: nothing to retrain
    assert not tick.run_requests, tick.skip_message
    assert tick.cursor and "seen" in tick.cursor

    week = "2026-11-02"  # Monday: 2026-11-02 and -03 of the feed fall in it
    result = run_job(defs, instance, f"{FEED}__maintenance", week)
    assert result.success, failure_message(result)
    with env["warehouse"].connect() as conn:
        tables = set(
            conn.execute(
                sa.text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'anomalies'"
                )
            ).scalars()
        )
    assert {"anomaly_scores", "quarantine"} <= tables
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([FEED, "maintenance_report"]), asset_partitions=[week]
        ),
        limit=1,
    ).records[0]
    meta = record.event_log_entry.asset_materialization.metadata
    assert Path(meta["report_html"].value).exists()
    assert meta["quality_success_percent"].value > 0
