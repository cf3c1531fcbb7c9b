"""Bad input through the real graph: quarantine with reasons, failed checks or errors naming file and column."""

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

FEED = {
    "name": "sensors_csv",
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "features": [
        {"name": "temp", "type": "float", "min": -20, "max": 80},
        {"name": "kind", "type": "category", "allowed": ["a", "b"]},
    ],
    "partitioning": {"start_date": "2026-11-01"},
    "validation": {"min_pass_rate": 0.9, "min_rows": 1},
}
HEADER = "id,ts,temp,kind\n"


def good_rows(day: str, n: int = 40) -> str:
    return "".join(
        f"r{i},{day}T{i % 24:02d}:00:00Z,{20 + i % 7}.5,{'ab'[i % 2]}\n" for i in range(n)
    )


@pytest.fixture
def env(tmp_path, monkeypatch):
    feeds = tmp_path / "feeds"
    write_feed(feeds, FEED)
    (feeds / "landing").mkdir()
    defs = definitions_for(feeds)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield {
            "defs": defs,
            "instance": instance,
            "landing": feeds / "landing",
            "warehouse": sa.create_engine(
                f"sqlite:///{tmp_path / 'pynomaly_home' / 'warehouse.db'}"
            ),
        }


def ingest(env, day):
    return run_job(env["defs"], env["instance"], "sensors_csv__ingest", day)


def quarantine(env, day) -> pd.DataFrame:
    return pd.read_sql(
        sa.text("SELECT * FROM quarantine WHERE partition_date = :d"),
        env["warehouse"],
        params={"d": day},
    )


def test_wrong_types_nan_inf_and_out_of_range_are_quarantined_with_reasons(env):
    day = "2026-11-02"
    bad = (
        f"x1,{day}T01:00:00Z,warm,a\n"  # wrong type
        f"x2,{day}T02:00:00Z,NaN,a\n"  # NaN in a non-nullable column
        f"x3,{day}T03:00:00Z,inf,b\n"  # infinite
        f"x4,{day}T04:00:00Z,120,b\n"  # out of range
        f"x5,{day}T05:00:00Z,20,c\n"
    )  # unknown category
    (env["landing"] / f"{day}.csv").write_text(HEADER + good_rows(day, 80) + bad)
    result = ingest(env, day)
    assert result.success, failure_message(result)
    q = quarantine(env, day)
    reasons = dict(zip(q["record_key"] + ":" + q["column_name"], q["rule"]))
    assert reasons["x1:temp"] == "parse as float"
    assert reasons["x2:temp"] == "not_nullable"
    assert reasons["x4:temp"] == "less_than_or_equal_to(80.0)"
    assert reasons["x5:kind"] == "isin(['a', 'b'])"
    assert "x3:temp" in reasons
    assert (q["feed"] == "sensors_csv").all() and q["row_json"].str.contains('"id"').all()
    meta = latest_metadata(env["instance"], ["sensors_csv", "validated"], day)
    assert (meta["raw_rows"], meta["dagster/row_count"], meta["quarantined_rows"]) == (85, 80, 5)
    assert check_results(env["instance"], result.run_id)["row_accounting"] is True


def test_pass_rate_below_the_floor_fails_the_blocking_check(env):
    day = "2026-11-03"
    bad = "".join(f"b{i},{day}T01:00:00Z,oops,a\n" for i in range(10))
    (env["landing"] / f"{day}.csv").write_text(HEADER + good_rows(day, 20) + bad)
    result = ingest(env, day)
    checks = check_results(env["instance"], result.run_id)
    assert checks["schema_pass_rate"] is False
    assert checks["row_accounting"] is True
    assert len(quarantine(env, day)) == 10


def test_missing_column_fails_naming_the_file_and_column(env):
    day = "2026-11-04"
    (env["landing"] / f"{day}.csv").write_text("id,ts,kind\n" + f"r1,{day}T01:00:00Z,a\n")
    result = ingest(env, day)
    assert not result.success
    message = failure_message(result)
    assert f"landing/{day}.csv" in message and "missing column(s) ['temp']" in message


def test_extra_column_fails_naming_it(env):
    day = "2026-11-05"
    (env["landing"] / f"{day}.csv").write_text(
        "id,ts,temp,kind,surprise\n" + f"r1,{day}T01:00:00Z,20,a,1\n"
    )
    result = ingest(env, day)
    assert not result.success
    assert "unexpected column(s) ['surprise']" in failure_message(result)


def test_empty_partition_fails_min_rows_and_accounting_still_holds(env):
    day = "2026-11-06"  # no file at all for this day
    result = ingest(env, day)
    checks = check_results(env["instance"], result.run_id)
    assert checks["min_rows"] is False
    assert checks["row_accounting"] is True
    meta = latest_metadata(env["instance"], ["sensors_csv", "validated"], day)
    assert meta["raw_rows"] == 0


def test_header_only_file_is_an_empty_partition(env):
    day = "2026-11-07"
    (env["landing"] / f"{day}.csv").write_text(HEADER)
    result = ingest(env, day)
    assert check_results(env["instance"], result.run_id)["min_rows"] is False


def test_unreadable_file_fails_raw_naming_the_file(env):
    day = "2026-11-08"
    (env["landing"] / f"{day}.csv").write_bytes(b"id,ts,temp,kind\n\xff\xfe\x00bad,\xff\n")
    result = ingest(env, day)
    assert not result.success
    message = failure_message(result)
    assert f"landing/{day}.csv" in message and "cannot read CSV file" in message


def test_failed_blocking_check_keeps_the_day_out_of_scoring(env):
    good_day, bad_day = "2026-11-09", "2026-11-10"
    (env["landing"] / f"{good_day}.csv").write_text(HEADER + good_rows(good_day, 300))
    assert ingest(env, good_day).success
    train = run_job(env["defs"], env["instance"], "sensors_csv__train")
    assert train.success, failure_message(train)
    bad = "".join(f"b{i},{bad_day}T01:00:00Z,oops,a\n" for i in range(50))
    (env["landing"] / f"{bad_day}.csv").write_text(HEADER + good_rows(bad_day, 10) + bad)
    daily = run_job(env["defs"], env["instance"], "sensors_csv__daily", bad_day)
    assert not daily.success
    materialized = env["instance"].get_materialized_partitions(
        dg.AssetKey(["sensors_csv", "anomaly_scores"])
    )
    assert bad_day not in materialized
