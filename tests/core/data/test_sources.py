"""Reading a partition from files and SQL: every error names the file or setting, and a source
query can read but never change the source."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from pynomaly_core.data.config import FeedConfigError, load_feed
from pynomaly_core.data.sources import SourceReadError, read_partition
from tests.pg import temporary_database

DAY = dt.date(2026, 1, 2)
FEED = {
    "name": "payments",
    "source": {"kind": "csv", "path": "landing/{date}/*.csv"},
    "event_time": "paid_at",
    "record_key": "payment_id",
    "features": [{"name": "amount", "type": "float"}],
    "partitioning": {"start_date": "2026-01-01"},
}
WINDOW_QUERY = (
    "SELECT * FROM payments WHERE paid_at >= :partition_start AND paid_at < :partition_end"
)


def feed_file(tmp_path: Path, **overrides):
    path = tmp_path / "payments.yaml"
    path.write_text(yaml.safe_dump({**FEED, **overrides}))
    return load_feed(path)


def landing(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "landing" / DAY.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_ragged_csv_names_every_bad_line(tmp_path):
    rows = ["payment_id,paid_at,amount"] + [f"p{i},2026-01-02T00:00:00Z,{i}" for i in range(30)]
    rows[3] += ",extra"
    rows[7] = "p7,2026-01-02T00:00:00Z"
    rows[20] += ",x,y"
    path = landing(tmp_path, "a.csv", "\n".join(rows) + "\n")
    with pytest.raises(SourceReadError) as err:
        read_partition(feed_file(tmp_path), DAY)
    message = str(err.value)
    assert (
        message.startswith(str(path))
        and "3 line(s) with the wrong number of fields: 4, 8, 21" in message
    )


def test_files_of_one_day_with_columns_in_another_order_are_aligned_by_name(tmp_path):
    landing(tmp_path, "a.csv", "payment_id,paid_at,amount\np1,2026-01-02T01:00:00Z,1.5\n")
    landing(tmp_path, "b.csv", "amount,payment_id,paid_at\n2.5,p2,2026-01-02T02:00:00Z\n")
    raw = read_partition(feed_file(tmp_path), DAY)
    assert raw.frame.to_dict("records") == [
        {"payment_id": "p1", "paid_at": "2026-01-02T01:00:00Z", "amount": "1.5"},
        {"payment_id": "p2", "paid_at": "2026-01-02T02:00:00Z", "amount": "2.5"},
    ]


def test_files_of_one_day_with_different_columns_are_refused(tmp_path):
    landing(tmp_path, "a.csv", "payment_id,paid_at,amount\np1,2026-01-02T01:00:00Z,1.5\n")
    other = landing(tmp_path, "b.csv", "payment_id,paid_at,price\np2,2026-01-02T02:00:00Z,2.5\n")
    with pytest.raises(SourceReadError, match=f"^{other}: columns .* differ from"):
        read_partition(feed_file(tmp_path), DAY)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM payments -- WHERE paid_at >= :partition_start AND paid_at < :partition_end",
        "SELECT * FROM payments /* :partition_start :partition_end */",
        "SELECT ':partition_start', ':partition_end' FROM payments",
    ],
)
def test_binds_that_only_appear_in_comments_or_strings_are_refused(tmp_path, query):
    with pytest.raises(
        FeedConfigError, match="source.query: .*must bind :partition_start and :partition_end"
    ):
        feed_file(tmp_path, source={"kind": "sql", "query": query})


def test_a_url_env_that_holds_no_url_names_the_variable_not_its_value(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYMENTS_DB", "hunter2-not-a-url")
    feed = feed_file(
        tmp_path, source={"kind": "sql", "query": WINDOW_QUERY, "url_env": "PAYMENTS_DB"}
    )
    with pytest.raises(SourceReadError) as err:
        read_partition(feed, DAY)
    assert "PAYMENTS_DB (source.url_env) does not hold a SQLAlchemy URL" in str(err.value)
    assert "hunter2" not in str(err.value)


def _seeded(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE payments (payment_id TEXT, paid_at TIMESTAMP, amount FLOAT)")
        )
        conn.execute(
            sa.text(
                "INSERT INTO payments VALUES ('p1', '2026-01-02 01:00:00', 1.5), "
                "('p2', '2026-01-03 01:00:00', 2.5)"
            )
        )
    return engine


def _source_cannot_write(tmp_path, monkeypatch, url: str) -> None:
    engine = _seeded(url)
    monkeypatch.setenv("PAYMENTS_DB", url)
    read = feed_file(
        tmp_path, source={"kind": "sql", "url_env": "PAYMENTS_DB", "query": WINDOW_QUERY}
    )
    assert read_partition(read, DAY).frame["payment_id"].tolist() == ["p1"]
    delete = feed_file(
        tmp_path,
        source={
            "kind": "sql",
            "url_env": "PAYMENTS_DB",
            "query": (
                "DELETE FROM payments WHERE paid_at >= :partition_start AND paid_at < :partition_end RETURNING *"
            ),
        },
    )
    with pytest.raises(SourceReadError, match="source query failed for partition 2026-01-02"):
        read_partition(delete, DAY)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payments")).scalar() == 2
    engine.dispose()


def test_a_sqlite_source_query_cannot_delete_rows(tmp_path, monkeypatch):
    _source_cannot_write(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'source.db'}")


@pytest.mark.postgres
def test_a_postgresql_source_query_runs_read_only(tmp_path, monkeypatch):
    with temporary_database("pynomaly_source") as url:
        _source_cannot_write(tmp_path, monkeypatch, url)


def test_a_huge_field_is_stored_whole_once_in_quarantine():
    from pynomaly_core.data.config import parse_feed
    from pynomaly_core.data.sources import partition_window
    from pynomaly_core.data.validation import MAX_FAILURE_VALUE, validate_partition

    feed = parse_feed(FEED)
    huge = "9" * 10_000_000 + "x"
    raw = pd.DataFrame(
        {"payment_id": ["p1", "p2"], "paid_at": ["2026-01-02T01:00:00Z"] * 2, "amount": ["1", huge]}
    )
    start, end = partition_window(DAY)
    result = validate_partition(
        raw, feed, source="landing/x.csv", partition_start=start, partition_end=end
    )
    [row] = result.quarantine.to_dict("records")
    assert row["rule"] == "parse as float"
    assert (
        len(row["failure_value"]) < MAX_FAILURE_VALUE + 100
        and "10,000,001 characters" in row["failure_value"]
    )
    assert huge in row["row_json"]
