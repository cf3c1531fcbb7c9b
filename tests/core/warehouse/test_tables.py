"""Table specs, creating and migrating tables (pynomaly_core.warehouse.tables), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    Column,
    TableSpec,
    ensure_table,
    make_engine,
    read_partition,
    replace_partition,
)
from tests.core.warehouse.helpers import DAY, scores


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


def test_extra_indexes_are_created_and_checked(engine: sa.Engine) -> None:
    spec = TableSpec(
        "events",
        (Column("feed", "text"), Column("partition_date", "date"), Column("kind", "text")),
        indexes=(("feed", "kind"),),
    )
    assert spec.index_name(("feed", "kind")) == "ix_events_feed_kind"
    for _ in range(2):  # idempotent
        ensure_table(engine, spec)
    names = {index["name"] for index in sa.inspect(engine).get_indexes("events")}
    assert {"ix_events_feed_kind", "ix_events_feed_partition_date"} <= names
    with pytest.raises(ValueError, match="table 'events' has no column 'nope'"):
        TableSpec("events", spec.columns, indexes=(("feed", "nope"),))
