"""The warehouse layer on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from pynomaly_core import export
from pynomaly_core.export import (
    ANOMALY_TABLE,
    ANOMALY_TOP_N,
    QUARANTINE_TABLE,
    Column,
    TableSpec,
    create_views,
    ensure_table,
    make_engine,
    read_feedback,
    read_partition,
    replace_partition,
    validate_identifier,
    warehouse_url_default,
)
from tests.pg import temporary_database

DAY = "2024-05-01"


# the `engine` fixture (SQLite and PostgreSQL warehouses) lives in tests/core/conftest.py


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[sa.Engine]:
    warehouse = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_table(warehouse, ANOMALY_TABLE)
    yield warehouse
    warehouse.dispose()


def scores(n: int = 6, *, run_id: str = "run-1", seed: int = 0) -> pd.DataFrame:
    """A valid frame for ANOMALY_TABLE with ``n`` rows."""
    rng = np.random.default_rng(seed)
    score = rng.gamma(2.0, 1.0, n)
    is_anomaly = score > np.quantile(score, 0.7)
    return pd.DataFrame(
        {
            "record_key": [f"rec-{i:06d}" for i in range(n)],
            "event_time": pd.Timestamp(DAY, tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400_000_000, n), unit="us"),
            "score": score,
            "normalized_score": score / score.max(),
            "is_anomaly": is_anomaly,
            "severity": np.where(is_anomaly, "high", "none"),
            "model_name": "IForest",
            "model_version": "v1",
            "run_id": run_id,
            "top_features": [{"amount": 0.7} if a else None for a in is_anomaly],
            "scored_at": pd.Timestamp("2024-05-02 03:00", tz="UTC"),
            **explanation_columns(is_anomaly),
        }
    )


def explanation_columns(is_anomaly) -> dict:
    """p-value and SHAP columns: explained anomalies name amount/country/hour."""
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    out: dict = {
        "p_value": np.where(is_anomaly, 0.001, 0.5),
        "explanation_method": np.where(is_anomaly, "tree", None),
    }
    for i, (name, value) in enumerate([("amount", 0.7), ("country", 0.2), ("hour", -0.1)], start=1):
        out[f"feature_{i}"] = np.where(is_anomaly, name, None)
        out[f"contribution_{i}"] = np.where(is_anomaly, value, np.nan)
    return out


def count(engine: sa.Engine, table: str = "anomaly_scores") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


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
            "model_version": "v1",
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
    monkeypatch.setattr(export, "_COPY_BATCH_ROWS", 1_000)
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


@pytest.mark.parametrize("name", ["anomaly_scores", "_x", "A1", "a" * 63])
def test_identifier_accepted(name: str) -> None:
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", "a b", 'x"; DROP TABLE y; --', "a" * 64, "ümlaut", None]
)
def test_identifier_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        validate_identifier(name)


def test_bad_names_never_reach_sql(sqlite_engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match=r"invalid SQL identifier 'x; DROP TABLE anomaly_scores'"):
        ensure_table(sqlite_engine, ANOMALY_TABLE, schema="x; DROP TABLE anomaly_scores")
    with pytest.raises(ValueError, match="invalid SQL identifier 'bad-name'"):
        TableSpec("bad-name", ANOMALY_TABLE.columns)
    with pytest.raises(ValueError, match="invalid SQL identifier 'two words'"):
        Column("two words", "text")
    with pytest.raises(ValueError, match="schemas need PostgreSQL"):
        read_partition(sqlite_engine, ANOMALY_TABLE, feed="f", partition_date=DAY, schema="x")


def test_existing_table_missing_a_column_is_named(tmp_path) -> None:
    warehouse = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TABLE anomaly_scores (feed TEXT, partition_date DATE)"))
    with pytest.raises(ValueError, match=r'"anomaly_scores" lacks NOT NULL column\(s\) \[.record_key.'):
        ensure_table(warehouse, ANOMALY_TABLE)
    warehouse.dispose()


def test_table_from_an_older_release_gains_the_new_nullable_columns(engine: sa.Engine) -> None:
    old = [c for c in ANOMALY_TABLE.columns if c.name not in ("p_value", "feature_1", "contribution_1")]
    legacy = TableSpec("anomaly_scores", tuple(old), ANOMALY_TABLE.primary_key, ANOMALY_TABLE.order_by)
    ensure_table(engine, legacy)
    replace_partition(engine, legacy, scores(5).drop(columns=["p_value", "feature_1", "contribution_1"]),
                      feed="payments", partition_date=DAY)
    ensure_table(engine, ANOMALY_TABLE)  # migrates in place
    got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)
    assert len(got) == 5 and got["p_value"].isna().all()
    replace_partition(engine, ANOMALY_TABLE, scores(5), feed="payments", partition_date=DAY)
    assert read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)["p_value"].notna().all()


def test_views_count_severities_join_feedback_and_list_model_versions(engine: sa.Engine) -> None:
    create_views(engine)
    frame = scores(50, seed=5)
    frame["severity"] = np.where(frame["is_anomaly"], np.resize(["low", "medium", "high", "critical"], 50), "none")
    replace_partition(engine, ANOMALY_TABLE, frame, feed="payments", partition_date=DAY)
    replace_partition(engine, ANOMALY_TABLE, scores(10, seed=6).assign(model_version="v2"),
                      feed="payments", partition_date="2024-05-02")
    flagged = frame.loc[frame["is_anomaly"], "record_key"].tolist()
    day = dt.date(2024, 5, 1) if engine.dialect.name == "postgresql" else DAY
    with engine.begin() as conn:  # what a BI user does
        for key, verdict in [(flagged[0], "confirmed"), (flagged[1], "rejected"), (flagged[2], "confirmed")]:
            conn.execute(
                sa.text("INSERT INTO anomaly_feedback (feed, partition_date, record_key, verdict, reviewed_at)"
                        " VALUES ('payments', :day, :key, :verdict, CURRENT_TIMESTAMP)"),
                {"day": day, "key": key, "verdict": verdict},
            )
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT low, medium, high, critical, confirmed, rejected FROM anomaly_daily_summary"
            " WHERE feed = 'payments' AND partition_date = :day"), {"day": day}).one()
        top = conn.execute(sa.text(
            "SELECT record_key, verdict, feature_1, contribution_1, p_value FROM anomaly_top"
            " WHERE feed = 'payments' AND partition_date = :day"), {"day": day}).all()
        versions = conn.execute(sa.text(
            "SELECT model_version, partitions, rows FROM model_versions_in_use ORDER BY model_version")).all()
    counts = frame.loc[frame["is_anomaly"], "severity"].value_counts()
    assert tuple(row) == (counts["low"], counts["medium"], counts["high"], counts["critical"], 2, 1)
    verdicts = {r.record_key: r.verdict for r in top}
    assert verdicts[flagged[0]] == "confirmed" and verdicts[flagged[1]] == "rejected"
    assert sum(v is None for v in verdicts.values()) == len(flagged) - 3
    assert {(r.feature_1, r.contribution_1, r.p_value) for r in top} == {("amount", 0.7, 0.001)}
    assert [tuple(v) for v in versions] == [("v1", 1, 50), ("v2", 1, 10)]
    got = read_feedback(engine, feed="payments", start=DAY, end=DAY)
    assert dict(zip(got["record_key"], got["label"])) == {flagged[0]: 1, flagged[1]: 0, flagged[2]: 1}


def test_views_aggregate_per_feed_and_day(engine: sa.Engine) -> None:
    create_views(engine)
    create_views(engine)  # idempotent
    frames = {
        ("payments", DAY): scores(40, seed=1),
        ("payments", "2024-05-02"): scores(30, seed=2).assign(model_version="v2"),
        ("logins", DAY): scores(20, seed=3),
    }
    # 150 anomalies in one partition, plus a higher-scoring row that is not one
    many = scores(300, seed=4).assign(is_anomaly=lambda f: f.index < 150)
    many.loc[299, "score"] = 1_000.0
    frames[("logins", "2024-05-02")] = many
    for (feed, day), frame in frames.items():
        replace_partition(engine, ANOMALY_TABLE, frame, feed=feed, partition_date=day)

    with engine.connect() as conn:
        summary = conn.execute(
            sa.text(
                "SELECT feed, partition_date, rows, anomalies, anomaly_rate, mean_score, max_score,"
                " model_version FROM anomaly_daily_summary"
            )
        ).all()
        top = conn.execute(
            sa.text(
                "SELECT anomaly_rank, record_key, score FROM anomaly_top"
                " WHERE feed = 'logins' AND partition_date = :day ORDER BY anomaly_rank"
            ),
            {"day": dt.date(2024, 5, 2) if engine.dialect.name == "postgresql" else "2024-05-02"},
        ).all()

    assert len(summary) == 4
    for feed, day, rows, anomalies, rate, mean, high, version in summary:
        frame = frames[(feed, str(day))]
        assert (rows, anomalies) == (len(frame), int(frame["is_anomaly"].sum()))
        assert rate == pytest.approx(frame["is_anomaly"].mean())
        assert mean == pytest.approx(frame["score"].mean())
        assert high == pytest.approx(frame["score"].max())
        assert version == frame["model_version"].iloc[0]
    anomalies = many[many["is_anomaly"]].sort_values("score", ascending=False)
    assert [r.anomaly_rank for r in top] == list(range(1, ANOMALY_TOP_N + 1))
    assert [r.record_key for r in top] == anomalies["record_key"].head(ANOMALY_TOP_N).tolist()


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


def test_make_engine_urls() -> None:
    for url in ("postgresql://u@db.example/warehouse", "postgres://u@db.example/warehouse"):
        assert make_engine(url).url.drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="driver 'psycopg2'.*psycopg 3"):
        make_engine("postgresql+psycopg2://u@db.example/warehouse")
    with pytest.raises(ValueError, match="PYNOMALY_WAREHOUSE_URL") as failure:
        make_engine("mysql://u:s3cret@db.example/warehouse")
    assert "s3cret" not in str(failure.value)


def test_sqlite_engine_uses_wal(tmp_path) -> None:
    warehouse = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    warehouse.dispose()


def test_warehouse_url_default(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path / "home"))
    assert warehouse_url_default() == f"sqlite:///{tmp_path / 'home' / 'warehouse.db'}"
    assert (tmp_path / "home").is_dir()
    monkeypatch.setenv("PYNOMALY_WAREHOUSE_URL", "postgresql://u@db.example/w")
    assert warehouse_url_default() == "postgresql://u@db.example/w"
