"""Table specs, creating and migrating tables (pynomaly_core.warehouse.tables), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateView

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    FEEDBACK_TABLE,
    Column,
    TableSpec,
    ensure_table,
    make_engine,
    read_partition,
    replace_partition,
    views,
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
    with pytest.raises(
        ValueError, match=r"table anomaly_scores lacks NOT NULL column\(s\) \[.record_key."
    ):
        ensure_table(warehouse, ANOMALY_TABLE)
    warehouse.dispose()


def test_table_from_an_older_release_gains_the_new_nullable_columns(engine: sa.Engine) -> None:
    old = [
        c for c in ANOMALY_TABLE.columns if c.name not in ("p_value", "feature_1", "contribution_1")
    ]
    legacy = TableSpec(
        "anomaly_scores", tuple(old), ANOMALY_TABLE.primary_key, ANOMALY_TABLE.order_by
    )
    ensure_table(engine, legacy)
    replace_partition(
        engine,
        legacy,
        scores(5).drop(columns=["p_value", "feature_1", "contribution_1"]),
        feed="payments",
        partition_date=DAY,
    )
    ensure_table(engine, ANOMALY_TABLE)  # migrates in place
    got = read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)
    assert len(got) == 5 and got["p_value"].isna().all()
    replace_partition(engine, ANOMALY_TABLE, scores(5), feed="payments", partition_date=DAY)
    assert (
        read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)["p_value"]
        .notna()
        .all()
    )


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


# --- model_version: text in older releases, an integer now --------------------------------------
def old_anomaly_spec() -> TableSpec:
    """anomaly_scores as releases before the integer model_version created it."""
    columns = tuple(
        dataclasses.replace(c, kind="text") if c.name == "model_version" else c
        for c in ANOMALY_TABLE.columns
    )
    return dataclasses.replace(ANOMALY_TABLE, columns=columns)


def old_warehouse(engine: sa.Engine, versions: dict[tuple[str, str], list[str]]) -> None:
    """An older release's anomaly table holding ``versions`` per (feed, day), with the BI views on top."""
    old = old_anomaly_spec()
    ensure_table(engine, old)
    ensure_table(engine, FEEDBACK_TABLE)
    for (feed, day), names in versions.items():
        replace_partition(
            engine,
            old,
            scores(len(names)).assign(model_version=names),
            feed=feed,
            partition_date=day,
        )
    with (
        engine.begin() as conn
    ):  # the views, without create_views (which would migrate the table first)
        for name, select in views._view_selects(conn, None).items():
            conn.execute(CreateView(select, name))


def summary_versions(engine: sa.Engine) -> dict[tuple[str, str], object]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT feed, partition_date, model_version FROM anomaly_daily_summary")
        ).all()
    return {(feed, str(day)): version for feed, day, version in rows}


def test_a_text_model_version_becomes_an_integer_so_10_sorts_after_9(engine: sa.Engine) -> None:
    old_warehouse(
        engine,
        {
            ("payments", DAY): ["9"] * 4,
            ("payments", "2024-05-02"): ["10"] * 3,
            ("logins", DAY): ["9", "10", "10", "9"],
        },
    )  # a day being rescored mixes versions
    assert summary_versions(engine)[("logins", DAY)] == "9"  # the bug: text compares '9' > '10'
    indexes = sa.inspect(engine).get_indexes("anomaly_scores")

    for _ in range(2):  # idempotent
        ensure_table(engine, ANOMALY_TABLE)

    column = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("anomaly_scores")}[
        "model_version"
    ]
    assert isinstance(column, sa.Integer)
    assert summary_versions(engine) == {
        ("payments", DAY): 9,
        ("payments", "2024-05-02"): 10,
        ("logins", DAY): 10,
    }
    got = read_partition(engine, ANOMALY_TABLE, feed="logins", partition_date=DAY)
    assert got["model_version"].tolist() == [9, 10, 10, 9] and got["model_version"].dtype == "int64"
    assert (
        len(read_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY)) == 4
    )  # rows kept
    replace_partition(
        engine,
        ANOMALY_TABLE,
        scores(2).assign(model_version=11),
        feed="payments",
        partition_date=DAY,
    )
    assert summary_versions(engine)[("payments", DAY)] == 11
    assert (
        sa.inspect(engine).get_indexes("anomaly_scores") == indexes
    )  # none lost by SQLite's rebuild


def test_a_model_version_that_is_not_an_integer_stops_the_migration(engine: sa.Engine) -> None:
    old_warehouse(engine, {("payments", DAY): ["3", "v1", "3", "20240430T0300"]})
    with pytest.raises(ValueError) as failure:
        ensure_table(engine, ANOMALY_TABLE)
    assert (
        "existing table anomaly_scores: column 'model_version' is now an integer, but 2 stored value(s) are not: "
        "['20240430T0300', 'v1']"
    ) in str(failure.value)
    column = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("anomaly_scores")}[
        "model_version"
    ]
    assert isinstance(column, sa.String)  # nothing was changed
    assert summary_versions(engine) == {("payments", DAY): "v1"}


def test_a_view_of_ones_own_on_the_column_is_named(engine: sa.Engine) -> None:
    old_warehouse(engine, {("payments", DAY): ["9", "10"]})
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE VIEW my_versions AS SELECT DISTINCT model_version FROM anomaly_scores")
        )
    with pytest.raises(
        ValueError, match=r"(?s)anomaly_scores.*A view of your own .* drop that view, run again"
    ):
        ensure_table(engine, ANOMALY_TABLE)
    assert summary_versions(engine) == {
        ("payments", DAY): "9"
    }  # rolled back: views and column as they were
