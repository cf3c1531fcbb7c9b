"""Loading and reading partitions (pynomaly_core.warehouse.load) on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    QUARANTINE_TABLE,
    Column,
    TableSpec,
    create_views,
    ensure_table,
    load,
    make_engine,
    read_partition,
    replace_partition,
)
from tests.core.warehouse.helpers import DAY, count, explanation_columns, scores
from tests.pg import temporary_database


def test_round_trip_keeps_types(engine: sa.Engine) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    frame = pd.DataFrame(
        {
            "record_key": ["a", "b", "c", "d"],
            "event_time": pd.to_datetime(
                [
                    "2024-05-01 02:00:00.123456789",
                    "2024-05-01 23:30:00",
                    None,
                    "2024-03-31 02:30:00",
                ],
                format="ISO8601",
            ).tz_localize("Europe/Berlin", nonexistent="shift_forward"),
            "score": [1.5, -0.25, 1e300, 0.0],
            "normalized_score": [1.0, 0.0, 0.5, 0.1],
            "is_anomaly": [True, False, True, False],
            "severity": ["critical", None, "low", "none"],
            "model_name": "IForest",
            "model_version": 1,
            "run_id": "run-1",
            "top_features": [
                {"amount": np.float32(0.5), "country": "NL", "ratio": float("nan")},
                None,
                [{"feature": "x", "weight": 2}],
                '{"already": "serialized"}',
            ],
            "scored_at": pd.Timestamp("2024-05-02 03:00", tz="UTC"),
            **explanation_columns([True, False, True, False]),
        }
    )
    assert replace_partition(engine, ANOMALY_TABLE, frame, feed="payments", partition_date=DAY) == 4

    got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)

    expected = frame.assign(
        event_time=frame["event_time"].dt.tz_convert("UTC").dt.floor("us"),
        scored_at=frame["scored_at"].astype("datetime64[ns, UTC]"),
        top_features=[
            {"amount": 0.5, "country": "NL", "ratio": None},  # JSON has no NaN
            None,
            [{"feature": "x", "weight": 2}],
            {"already": "serialized"},
        ],
        # a frame without is_alert (scored before the alert budget): filled from is_anomaly
        is_alert=pd.array(frame["is_anomaly"].tolist(), dtype="boolean"),
    )
    expected.insert(0, "partition_date", [dt.date(2024, 5, 1)] * 4)
    expected.insert(0, "feed", "payments")
    pd.testing.assert_frame_equal(got, expected)
    assert str(got["event_time"].dt.tz) == "UTC"


def test_quarantine_round_trip_keeps_one_row_per_failed_rule(engine: sa.Engine) -> None:
    ensure_table(engine, QUARANTINE_TABLE)
    failed = {"payment_id": "p7", "amount": -3.0, "merchant": None}
    frame = pd.DataFrame(
        {
            "row_number": [7, 7, 9],
            "record_key": ["p7", "p7", None],
            "column_name": ["amount", "merchant", None],
            "rule": ["min", "not_null", "parse"],
            "failure_value": ["-3.0", None, None],
            "row_json": [failed, failed, '{"raw": "garbage;;"}'],
            "run_id": "run-1",
            "quarantined_at": pd.Timestamp("2024-05-02 03:00", tz="UTC"),
        }
    )
    replace_partition(engine, QUARANTINE_TABLE, frame, feed="payments", partition_date=DAY)

    got = read_partition(engine, QUARANTINE_TABLE, feed="payments", partition_date=DAY)

    assert got["row_number"].tolist() == [7, 7, 9]
    assert got["rule"].tolist() == ["min", "not_null", "parse"]
    assert got["column_name"].tolist() == ["amount", "merchant", None]
    assert got["row_json"].tolist() == [failed, failed, {"raw": "garbage;;"}]
    assert got["record_key"].tolist() == ["p7", "p7", None]


def test_custom_spec_round_trip_with_nullable_kinds(engine: sa.Engine) -> None:
    spec = TableSpec(
        "feature_drift",
        (
            Column("feed", "text"),
            Column("partition_date", "date"),
            Column("feature", "text"),
            Column("reference_day", "date", nullable=True),
            Column("samples", "int", nullable=True),
            Column("drifted", "bool", nullable=True),
        ),
        primary_key=("feed", "partition_date", "feature"),
        order_by=("feature",),
    )
    ensure_table(engine, spec)
    frame = pd.DataFrame(
        {
            "feature": ["amount", "hour"],
            "reference_day": [dt.date(2024, 4, 1), None],
            "samples": pd.array([10, None], dtype="Int64"),
            "drifted": pd.array([True, None], dtype="boolean"),
        }
    )
    replace_partition(engine, spec, frame, feed="payments", partition_date=DAY)

    got = read_partition(engine, spec, feed="payments", partition_date=DAY)

    assert got["reference_day"].tolist() == [dt.date(2024, 4, 1), None]
    pd.testing.assert_series_equal(got["samples"], frame["samples"])
    pd.testing.assert_series_equal(got["drifted"], frame["drifted"])


def test_rerun_replaces_only_its_partition(engine: sa.Engine) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    other_day = scores(3, seed=1)
    other_feed = scores(2, seed=2)
    replace_partition(engine, ANOMALY_TABLE, scores(6), feed="payments", partition_date=DAY)
    replace_partition(
        engine, ANOMALY_TABLE, other_day, feed="payments", partition_date="2024-05-02"
    )
    replace_partition(engine, ANOMALY_TABLE, other_feed, feed="logins", partition_date=DAY)

    rerun = scores(4, run_id="run-2", seed=3)
    for _ in range(2):
        replace_partition(engine, ANOMALY_TABLE, rerun, feed="payments", partition_date=DAY)

    got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)
    assert got["run_id"].tolist() == ["run-2"] * 4
    pd.testing.assert_series_equal(got["score"], rerun["score"])
    untouched = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date="2024-05-02")
    pd.testing.assert_series_equal(untouched["record_key"], other_day["record_key"])
    assert len(read_partition(engine, ANOMALY_TABLE, feed="logins", partition_date=DAY)) == 2
    assert count(engine) == 4 + 3 + 2


def test_empty_frame_empties_the_partition(engine: sa.Engine) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    replace_partition(engine, ANOMALY_TABLE, scores(5), feed="payments", partition_date=DAY)
    empty = pd.DataFrame({c.name: [] for c in ANOMALY_TABLE.frame_columns})

    assert replace_partition(engine, ANOMALY_TABLE, empty, feed="payments", partition_date=DAY) == 0

    got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)
    assert got.empty
    assert list(got.columns) == [c.name for c in ANOMALY_TABLE.columns]


def test_failure_during_load_rolls_back(engine: sa.Engine, monkeypatch) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    original = scores(3_000)
    replace_partition(engine, ANOMALY_TABLE, original, feed="payments", partition_date=DAY)
    # The duplicate key is in the last of three COPY batches: the database only sees
    # it after streaming 2,000+ new rows, after the old rows were deleted.
    monkeypatch.setattr(load, "COPY_BATCH_ROWS", 1_000)
    bad = scores(3_000, run_id="run-2", seed=9)
    bad.loc[2_999, "record_key"] = bad.loc[0, "record_key"]

    with pytest.raises(ValueError, match="anomaly_scores.*primary key") as failure:
        replace_partition(engine, ANOMALY_TABLE, bad, feed="payments", partition_date=DAY)

    # rejected by the database while loading, not by validation beforehand
    assert isinstance(
        failure.value.__cause__, psycopg.errors.UniqueViolation | sa.exc.IntegrityError
    )
    got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)
    pd.testing.assert_series_equal(got["score"], original["score"])
    assert set(got["run_id"]) == {"run-1"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="score"), r"missing column\(s\) \['score'\]"),
        (lambda f: f.assign(bogus=1), r"unexpected column\(s\) \['bogus'\]"),
        (lambda f: f.assign(feed="payments"), "'feed'.*filled from the feed argument"),
        (lambda f: f.assign(partition_date=DAY), "'partition_date'.*partition_date argument"),
    ],
)
def test_wrong_columns_are_named(sqlite_engine: sa.Engine, change: Callable, message: str) -> None:
    with pytest.raises(ValueError, match=f"table 'anomaly_scores'.*{message}"):
        replace_partition(
            sqlite_engine, ANOMALY_TABLE, change(scores()), feed="payments", partition_date=DAY
        )


def _set(column: str, position: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        values = frame[column].astype(object).tolist()
        values[position] = value
        return frame.assign(**{column: pd.Series(values, dtype=object)})

    return change


@pytest.mark.parametrize(
    ("column", "change", "message"),
    [
        ("score", lambda f: f.assign(score=f["score"].where(f.index != 2, np.inf)), "non-finite"),
        ("score", lambda f: f.assign(score=f["score"].where(f.index != 2)), "NOT NULL.*index 2"),
        ("normalized_score", lambda f: f.assign(normalized_score=1.5), r"outside \[0.0, 1.0\]"),
        (
            "event_time",
            lambda f: f.assign(event_time=f["event_time"].dt.tz_localize(None)),
            "naive",
        ),
        ("scored_at", lambda f: f.assign(scored_at="2024-05-02"), "timezone-aware"),
        ("severity", lambda f: f.assign(severity="urgent"), "'urgent'"),
        ("record_key", lambda f: f.assign(record_key=np.arange(len(f))), "str values"),
        ("record_key", _set("record_key", 1, "bad\x00key"), "NUL character at index 1"),
        ("model_name", _set("model_name", 3, None), "NOT NULL.*index 3"),
        ("is_anomaly", lambda f: f.assign(is_anomaly=1), "bool values"),
        ("top_features", _set("top_features", 0, "{not json"), "invalid JSON value at index 0"),
        ("top_features", _set("top_features", 0, {1, 2}), "invalid JSON value"),
        ("top_features", _set("top_features", 0, '{"x": NaN}'), "invalid JSON value"),
    ],
)
def test_invalid_values_are_named(
    sqlite_engine: sa.Engine, column: str, change: Callable, message: str
) -> None:
    replace_partition(sqlite_engine, ANOMALY_TABLE, scores(), feed="payments", partition_date=DAY)

    with pytest.raises(ValueError, match=f"column '{column}' of table 'anomaly_scores'.*{message}"):
        replace_partition(
            sqlite_engine, ANOMALY_TABLE, change(scores()), feed="payments", partition_date=DAY
        )

    assert count(sqlite_engine) == 6  # the previous partition is untouched


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"feed": "", "partition_date": DAY}, "feed must be"),
        ({"feed": "payments", "partition_date": "2024-13-01"}, "partition_date must be"),
        ({"feed": "payments", "partition_date": "20240501"}, "partition_date must be"),
    ],
)
def test_bad_partition_arguments(sqlite_engine: sa.Engine, arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace_partition(sqlite_engine, ANOMALY_TABLE, scores(), **arguments)


def _replace_when_both_ready(start: threading.Barrier, engine: sa.Engine, frame) -> int:
    start.wait()
    return replace_partition(engine, ANOMALY_TABLE, frame, feed="payments", partition_date=DAY)


def test_concurrent_replace_of_one_partition_leaves_one_copy(engine: sa.Engine) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    frames = [scores(2_000, run_id=f"run-{i}", seed=i) for i in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(3):
            start = threading.Barrier(2)
            loads = [pool.submit(_replace_when_both_ready, start, engine, f) for f in frames]
            assert [load.result() for load in loads] == [2_000, 2_000]  # neither failed

            got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)
            assert len(got) == 2_000
            assert got["run_id"].nunique() == 1


@pytest.mark.postgres
def test_postgres_schema() -> None:
    with temporary_database() as url:
        warehouse = make_engine(url)
        ensure_table(warehouse, ANOMALY_TABLE, schema="analytics")
        create_views(warehouse, schema="analytics")
        replace_partition(
            warehouse,
            ANOMALY_TABLE,
            scores(),
            feed="payments",
            partition_date=DAY,
            schema="analytics",
        )

        got = read_partition(
            warehouse, ANOMALY_TABLE, feed="payments", partition_date=DAY, schema="analytics"
        )
        assert len(got) == 6
        assert count(warehouse, "analytics.anomaly_scores") == 6
        assert count(warehouse, "analytics.anomaly_daily_summary") == 1
        with warehouse.connect() as conn:
            public = conn.execute(sa.text("SELECT to_regclass('public.anomaly_scores')")).scalar()
            column_type = conn.execute(
                sa.text(
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                    "'analytics' AND table_name = 'anomaly_scores' AND column_name = 'top_features'"
                )
            ).scalar()
        assert public is None
        assert column_type == "jsonb"
        warehouse.dispose()


# --- insert, upsert, select, count, delete: the writes besides a partition replace ---------------
EVENTS = TableSpec(
    "events",
    (
        Column("feed", "text"),
        Column("partition_date", "date"),
        Column("event_id", "text"),
        Column("kind", "text"),
        Column("created_at", "timestamp"),
        Column("payload", "json"),
        Column("handled", "bool", nullable=True),
    ),
    primary_key=("event_id",),
    order_by=("created_at", "event_id"),
)
NOON = pd.Timestamp(f"{DAY} 12:00", tz="UTC")


def events(*ids: str, kind: str = "alert", handled: object = None, hours: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": list(ids),
            "kind": kind,
            "created_at": [NOON + pd.Timedelta(hours=hours + i) for i in range(len(ids))],
            "payload": [{"n": i} for i in range(len(ids))],
            "handled": pd.array([handled] * len(ids), dtype="boolean"),
        }
    )


def test_insert_rows_appends_inside_the_callers_transaction(engine: sa.Engine) -> None:
    ensure_table(engine, EVENTS)
    with engine.connect() as conn:
        transaction = conn.begin()
        load.lock_rows(conn, EVENTS, "payments", "alert")
        assert (
            load.insert_rows(conn, EVENTS, events("a", "b"), feed="payments", partition_date=DAY)
            == 2
        )
        seen = load.select_rows(conn, EVENTS, equal={"feed": "payments", "kind": "alert"})
        assert seen["event_id"].tolist() == ["a", "b"]  # the transaction sees its own rows
        transaction.rollback()
    assert count(engine, "events") == 0

    with engine.begin() as conn:
        load.insert_rows(conn, EVENTS, events("a", "b"), feed="payments", partition_date=DAY)
        load.insert_rows(
            conn, EVENTS, events("c", kind="report"), feed="logins", partition_date=DAY
        )
    assert count(engine, "events") == 3
    with pytest.raises(ValueError, match="events.*primary key"), engine.begin() as conn:
        load.insert_rows(conn, EVENTS, events("a"), feed="payments", partition_date=DAY)
    with pytest.raises(ValueError, match="column 'kind' of table 'events'"), engine.begin() as conn:
        load.insert_rows(conn, EVENTS, events("d", kind=None), feed="payments", partition_date=DAY)


def test_select_rows_filters_by_value_and_lower_bound(engine: sa.Engine) -> None:
    ensure_table(engine, EVENTS)
    with engine.begin() as conn:
        load.insert_rows(conn, EVENTS, events("a", "b", "c"), feed="payments", partition_date=DAY)
        load.insert_rows(
            conn, EVENTS, events("d", kind="report"), feed="payments", partition_date=DAY
        )
    with engine.connect() as conn:
        later = load.select_rows(
            conn,
            EVENTS,
            equal={"feed": "payments", "kind": "alert"},
            after={"created_at": NOON.to_pydatetime()},
        )
        everything = load.select_rows(conn, EVENTS, equal={})
        by_day = load.select_rows(conn, EVENTS, equal={"partition_date": DAY, "kind": "report"})
        with pytest.raises(ValueError, match="table 'events' has no column 'nope'"):
            load.select_rows(conn, EVENTS, equal={"nope": 1})
        with pytest.raises(ValueError, match="JSON"):
            load.select_rows(conn, EVENTS, equal={"payload": {}})
    assert later["event_id"].tolist() == ["b", "c"]  # strictly after noon
    assert later["created_at"].tolist() == [
        NOON + pd.Timedelta(hours=1),
        NOON + pd.Timedelta(hours=2),
    ]
    assert later["payload"].tolist() == [{"n": 1}, {"n": 2}]
    assert len(everything) == 4 and by_day["event_id"].tolist() == ["d"]


def test_upsert_rows_replaces_by_primary_key(engine: sa.Engine) -> None:
    ensure_table(engine, EVENTS)
    assert (
        load.upsert_rows(engine, EVENTS, events("a", "b"), feed="payments", partition_date=DAY) == 2
    )
    changed = events("b", "c", handled=True).assign(payload=[{"n": 9}, {"n": 10}])
    for _ in range(2):  # idempotent
        assert load.upsert_rows(engine, EVENTS, changed, feed="payments", partition_date=DAY) == 2
    got = read_partition(engine, EVENTS, feed="payments", partition_date=DAY).set_index("event_id")
    assert sorted(got.index) == ["a", "b", "c"]
    assert got.loc["b", "payload"] == {"n": 9} and bool(got.loc["b", "handled"])
    assert pd.isna(got.loc["a", "handled"]) and got.loc["a", "payload"] == {"n": 0}
    assert load.upsert_rows(engine, EVENTS, events()[:0], feed="payments", partition_date=DAY) == 0
    with pytest.raises(ValueError, match="'quarantine' has no primary key"):
        load.upsert_rows(
            engine, QUARANTINE_TABLE, pd.DataFrame(), feed="payments", partition_date=DAY
        )


def test_count_partition_and_delete_before(engine: sa.Engine) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    for feed, day, rows in [
        ("payments", "2024-04-30", 2),
        ("payments", DAY, 3),
        ("logins", "2024-04-29", 4),
    ]:
        replace_partition(engine, ANOMALY_TABLE, scores(rows), feed=feed, partition_date=day)
    assert load.count_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY) == 3
    assert (
        load.count_partition(engine, ANOMALY_TABLE, feed="payments", partition_date="2024-05-09")
        == 0
    )

    before = dt.date(2024, 5, 1)
    assert load.delete_before(engine, "anomaly_scores", feed="payments", before=before) == 2
    assert load.delete_before(engine, "anomaly_scores", feed="payments", before=before) == 0
    assert load.delete_before(engine, "never_created", feed="payments", before=before) is None
    assert (
        load.count_partition(engine, ANOMALY_TABLE, feed="logins", partition_date="2024-04-29") == 4
    )
    with pytest.raises(ValueError, match="feed must be"):
        load.delete_before(engine, "anomaly_scores", feed="", before=before)
