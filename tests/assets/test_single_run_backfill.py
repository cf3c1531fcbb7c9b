"""A single-run backfill: one run for a range of partitions, each partition still recorded.

The range-capable assets (raw, validated, anomaly_scores, anomaly_table) carry
``BackfillPolicy.single_run()``, so Dagster backfills a range of them in one run tagged with
the range (``dagster/asset_partition_range_start/end``). These tests execute that run on a real
instance and read back what it recorded per partition.
"""

from __future__ import annotations

import dagster as dg
import pytest

from pynomaly_assets.defs.validation import MIN_ROWS, ROW_ACCOUNTING, SCHEMA_PASS_RATE
from pynomaly_assets.feed_context import FeedContext, _range_result
from pynomaly_core.data.config import parse_feed
from pynomaly_core.storage import FrameStore
from tests.assets.helpers import (
    SMALL_DEMO,
    definitions_for,
    failure_message,
    range_tags,
    run_job,
    write_feed,
)

HOURLY = {
    **SMALL_DEMO,
    "name": "backfill_demo",
    "partitioning": {"start_date": "2026-11-01", "granularity": "hourly"},
    "validation": {"min_rows": 1},
}
FEED = HOURLY["name"]
KEYS = [f"2026-11-01-{h:02d}:00" for h in range(22, 24)] + [
    f"2026-11-02-{h:02d}:00" for h in range(4)
]
CHECKS = (ROW_ACCOUNTING, SCHEMA_PASS_RATE, MIN_ROWS)


def evaluations(instance: dg.DagsterInstance, run_id: str) -> list:
    return [
        r.dagster_event.event_specific_data
        for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]


def materialized(instance: dg.DagsterInstance, stage: str) -> dict[str, dict]:
    """{partition: metadata} of the latest materialization of each partition of ``stage``."""
    records = instance.fetch_materializations(dg.AssetKey([FEED, stage]), limit=1000).records
    out: dict[str, dict] = {}
    for record in records:  # newest first
        meta = record.asset_materialization.metadata
        out.setdefault(record.partition_key, {k: v.value for k, v in meta.items()})
    return out


@pytest.fixture(scope="module")
def backfill(tmp_path_factory):
    """One run of the ingest job over ``KEYS`` (6 hours across midnight), once for the module."""
    root = tmp_path_factory.mktemp("backfill")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    mp.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    write_feed(root / "feeds", HOURLY)
    defs = definitions_for(root / "feeds")
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        result = defs.resolve_job_def(f"{FEED}__ingest").execute_in_process(
            instance=instance, tags=range_tags(KEYS[0], KEYS[-1]), raise_on_error=False
        )
        yield {"instance": instance, "result": result, "home": root / "home", "defs": defs}
    mp.undo()


def test_range_assets_declare_a_single_run_backfill():
    fc = FeedContext(parse_feed(HOURLY))
    defs = definitions_for_feed(fc)
    for stage in ("raw", "validated", "anomaly_scores", "anomaly_table"):
        policy = defs.get_assets_def(fc.key(stage)).backfill_policy
        assert policy == dg.BackfillPolicy.single_run(), stage
    # the assets that stay one run per partition
    for stage in ("explanations", "drift_report", "detector_performance"):
        assert defs.get_assets_def(fc.key(stage)).backfill_policy is None, stage
    capped = FeedContext(
        parse_feed(
            {**HOURLY, "partitioning": {**HOURLY["partitioning"], "max_partitions_per_run": 24}}
        )
    )
    assert capped.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=24)


def definitions_for_feed(fc: FeedContext) -> dg.Definitions:
    from pynomaly_assets.definitions import build_feed_definitions

    return build_feed_definitions(fc)


def test_one_run_records_every_partition(backfill):
    instance, result = backfill["instance"], backfill["result"]
    assert result.success, failure_message(result)
    assert instance.get_runs_count() == 1
    for stage in ("raw", "validated"):
        assert instance.get_materialized_partitions(dg.AssetKey([FEED, stage])) == set(KEYS)
    raw = materialized(instance, "raw")
    validated = materialized(instance, "validated")
    # each partition's own metadata (2 machines every 15 minutes: 8 rows an hour), not the run's
    assert {k: raw[k]["dagster/row_count"] for k in KEYS} == dict.fromkeys(KEYS, 8)
    assert {k: validated[k]["raw_rows"] for k in KEYS} == dict.fromkeys(KEYS, 8)
    assert "rows of hour 23:00 UTC" in raw["2026-11-01-23:00"]["source"]
    store = FrameStore(backfill["home"] / "frames")
    assert all(len(store.read([FEED, "validated"], k)) == 8 for k in KEYS)


def test_one_run_records_every_partitions_checks(backfill):
    found = evaluations(backfill["instance"], backfill["result"].run_id)
    per_partition = {(e.check_name, e.partition): e.passed for e in found if e.partition}
    assert per_partition == {(c, k): True for c in CHECKS for k in KEYS}
    summary = {e.check_name: e for e in found if e.partition is None}
    assert set(summary) == set(CHECKS)
    assert all(e.passed for e in summary.values())
    assert summary[MIN_ROWS].metadata["partitions"].value == len(KEYS)


def test_a_failing_partition_fails_the_range_check_and_is_named():
    ok = dg.AssetCheckResult(check_name=MIN_ROWS, passed=True)
    bad = dg.AssetCheckResult(check_name=MIN_ROWS, passed=False, description="3 rows")
    result = _range_result(MIN_ROWS, [("a", ok), ("b", bad), ("c", ok)])
    assert not result.passed
    assert result.metadata["failed_partitions"].value == ["b"]
    assert result.description == "2 of 3 partitions passed; first failure (b): 3 rows"


def test_daily_feed_runs_one_partition_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    write_feed(tmp_path / "feeds", SMALL_DEMO)
    defs = definitions_for(tmp_path / "feeds")
    name = SMALL_DEMO["name"]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = run_job(defs, instance, f"{name}__ingest", "2026-11-02")
        assert result.success, failure_message(result)
        found = evaluations(instance, result.run_id)
        # one evaluation per check, as a one-partition run always recorded them
        assert sorted(e.check_name for e in found) == sorted(CHECKS)
        records = instance.fetch_materializations(dg.AssetKey([name, "raw"]), limit=10).records
        assert [r.partition_key for r in records] == ["2026-11-02"]
        assert "partitions_in_run" not in records[0].asset_materialization.metadata


def test_hourly_quarantine_keeps_the_days_other_hours(tmp_path, monkeypatch):
    """Hours share their day's quarantine partition; validating one hour again replaces only its rows."""
    import sqlalchemy as sa

    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    landing = tmp_path / "feeds" / "landing"
    landing.mkdir(parents=True)
    (landing / "2026-11-01.csv").write_text(
        "id,ts,x\n"
        "a,2026-11-01T00:10:00Z,1.0\nb,2026-11-01T00:20:00Z,oops\n"
        "c,2026-11-01T01:10:00Z,2.0\nd,2026-11-01T01:20:00Z,bad\n"
    )
    feed = {
        "name": "hourly_csv",
        "source": {"kind": "csv", "path": "landing/{date}.csv"},
        "event_time": "ts",
        "record_key": "id",
        "features": [{"name": "x", "type": "float"}],
        "partitioning": {"start_date": "2026-11-01", "granularity": "hourly"},
        "validation": {"min_rows": 1, "min_pass_rate": 0.0},
    }
    write_feed(tmp_path / "feeds", feed)
    defs = definitions_for(tmp_path / "feeds")

    def quarantined() -> list[str]:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'warehouse.db'}")
        with engine.connect() as conn:
            keys = conn.execute(sa.text("SELECT record_key FROM quarantine ORDER BY 1")).scalars()
            out = list(keys)
        engine.dispose()
        return out

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        job = defs.resolve_job_def("hourly_csv__ingest")
        tags = range_tags("2026-11-01-00:00", "2026-11-01-01:00")
        ranged = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        assert ranged.success, failure_message(ranged)
        assert quarantined() == ["b", "d"]
        again = run_job(defs, instance, "hourly_csv__ingest", "2026-11-01-01:00")
        assert again.success, failure_message(again)
        assert quarantined() == ["b", "d"]  # hour 00's row kept, hour 01's replaced, not doubled
