"""The whole export path with a mixed-case PostgreSQL schema (``Anomalies``) and on SQLite.

A schema name with capitals is case-sensitive in SQL; every statement must quote it. Rows used to
commit to ``"Anomalies".anomaly_scores`` and then a statement naming the table unquoted looked for
``anomalies.anomaly_scores``. This runs every warehouse write and read a feed's runs make (the
export asset itself included) and checks that nothing lands in, or is looked for in, ``anomalies``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_assets.defs.export import ROWS_MATCH_SCORES, build_export_asset
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import WarehouseResource
from pynomaly_core.data.config import parse_feed
from pynomaly_core.maintenance import notify
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    BI_VIEWS,
    NOTIFICATIONS_TABLE,
    QUARANTINE_TABLE,
    WAREHOUSE_TABLES,
    count_partition,
    delete_before,
    ensure_warehouse,
    make_engine,
    qualified,
    read_feedback,
    read_partition,
    replace_partition,
    upsert_feedback,
)
from tests.assets.helpers import SMALL_DEMO
from tests.core.warehouse.helpers import DAY, scores
from tests.pg import temporary_database

SCHEMA = "Anomalies"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str | None]]:
    """(URL, schema): a SQLite file, or a fresh PostgreSQL database with schema ``Anomalies``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}", None
    else:
        with temporary_database() as url:
            yield url, SCHEMA


def select(engine: sa.Engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def test_every_warehouse_statement_quotes_the_schema(warehouse) -> None:
    url, schema = warehouse
    engine = make_engine(url)
    ensure_warehouse(engine, schema)
    ensure_warehouse(engine, schema)  # idempotent
    frame = scores(8).assign(model_version=[9, 9, 10, 10, 10, 10, 10, 10])
    assert (
        replace_partition(
            engine, ANOMALY_TABLE, frame, feed="payments", partition_date=DAY, schema=schema
        )
        == 8
    )
    replace_partition(
        engine,
        ANOMALY_TABLE,
        scores(3),
        feed="payments",
        partition_date="2024-04-01",
        schema=schema,
    )
    assert (
        count_partition(engine, ANOMALY_TABLE, feed="payments", partition_date=DAY, schema=schema)
        == 8
    )
    assert (
        len(
            read_partition(
                engine, ANOMALY_TABLE, feed="payments", partition_date=DAY, schema=schema
            )
        )
        == 8
    )

    flagged = frame.loc[frame["is_anomaly"], "record_key"].tolist()
    review = pd.DataFrame(
        {
            "record_key": flagged[:2],
            "verdict": ["confirmed", "rejected"],
            "reviewer": "ana",
            "note": None,
            "reviewed_at": pd.Timestamp(f"{DAY} 09:00", tz="UTC"),
        }
    )
    assert upsert_feedback(engine, review, feed="payments", partition_date=DAY, schema=schema) == 2
    labels = read_feedback(engine, feed="payments", start=DAY, end=DAY, schema=schema)
    assert dict(zip(labels["record_key"], labels["label"])) == {flagged[0]: 1, flagged[1]: 0}

    quarantined = pd.DataFrame(
        {
            "row_number": [3],
            "record_key": ["r-3"],
            "column_name": ["amount"],
            "rule": ["parse as float"],
            "failure_value": ["abc"],
            "row_json": [{"amount": "abc"}],
            "run_id": ["run-1"],
            "quarantined_at": [pd.Timestamp(f"{DAY} 04:00", tz="UTC")],
        }
    )
    replace_partition(
        engine, QUARANTINE_TABLE, quarantined, feed="payments", partition_date=DAY, schema=schema
    )
    sent = notify(
        engine,
        "payments",
        "drift",
        "drift on payments",
        {"share": 0.4},
        webhook_url=None,
        cooldown=dt.timedelta(hours=6),
        now=dt.datetime(2024, 5, 1, 5, tzinfo=dt.UTC),
        schema=schema,
    )
    again = notify(
        engine,
        "payments",
        "drift",
        "drift on payments",
        {"share": 0.5},
        webhook_url=None,
        cooldown=dt.timedelta(hours=6),
        now=dt.datetime(2024, 5, 1, 6, tzinfo=dt.UTC),
        schema=schema,
    )
    assert sent.sent and not again.sent  # the cooldown query found the first one
    assert (
        len(
            read_partition(
                engine, NOTIFICATIONS_TABLE, feed="payments", partition_date=DAY, schema=schema
            )
        )
        == 1
    )

    summary = qualified(engine, "anomaly_daily_summary", schema)
    top = qualified(engine, "anomaly_top", schema)
    assert select(
        engine,
        f"SELECT rows, model_version, confirmed, rejected FROM {summary} WHERE partition_date = :d",
        d=dt.date(2024, 5, 1) if schema else DAY,
    ) == [(8, 10, 1, 1)]
    assert {r[0] for r in select(engine, f"SELECT verdict FROM {top} WHERE feed = 'payments'")} >= {
        "confirmed"
    }

    assert (
        delete_before(
            engine, ANOMALY_TABLE.name, feed="payments", before=dt.date(2024, 5, 1), schema=schema
        )
        == 3
    )
    assert (
        delete_before(
            engine,
            QUARANTINE_TABLE.name,
            feed="payments",
            before=dt.date(2024, 5, 2),
            schema=schema,
        )
        == 1
    )
    if (
        schema is not None
    ):  # every table and view is in "Anomalies", nothing was created in anomalies
        names = {
            name
            for (name,) in select(
                engine,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s",
                s=SCHEMA,
            )
        }
        assert names == {spec.name for spec in WAREHOUSE_TABLES} | set(BI_VIEWS)
        assert select(
            engine,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'anomalies'",
        ) == [(0,)]
    engine.dispose()


def test_the_export_asset_names_its_table_as_sql_does(warehouse) -> None:
    """The asset's ``dagster/table_name`` is what a query can use: ``"Anomalies".anomaly_scores``, quoted."""
    url, schema = warehouse
    fc = FeedContext(parse_feed(SMALL_DEMO))
    day = "2026-11-02"
    scored = scores(5).drop(
        columns=[
            "run_id",
            "scored_at",
            "explanation_method",
            "feature_1",
            "contribution_1",
            "feature_2",
            "contribution_2",
            "feature_3",
            "contribution_3",
        ]
    )
    scored["model_version"] = "3"  # as the scoring asset hands it over: MLflow's version, as text
    explained = pd.DataFrame(
        columns=[
            "record_key",
            "explanation_method",
            "feature_1",
            "contribution_1",
            "feature_2",
            "contribution_2",
            "feature_3",
            "contribution_3",
        ]
    )

    @dg.asset(key=fc.key("anomaly_scores"), partitions_def=fc.partitions_def)
    def anomaly_scores() -> pd.DataFrame:
        return scored

    @dg.asset(key=fc.key("explanations"), partitions_def=fc.partitions_def)
    def explanations() -> pd.DataFrame:
        return explained

    @dg.asset(key=fc.key("validated"), partitions_def=fc.partitions_def)
    def validated() -> pd.DataFrame:  # the scored rows' passthrough and feature values
        numbers = {f["name"]: 1.0 for f in SMALL_DEMO["features"]}
        return pd.DataFrame(
            {**numbers, "machine_type": "press", "machine_id": "m01", "anomaly_kind": ""},
            index=range(5),
        )

    result = dg.materialize_to_memory(
        [anomaly_scores, explanations, validated, build_export_asset(fc)],
        partition_key=day,
        resources={"warehouse": WarehouseResource(url=url, schema_name=schema)},
    )
    assert result.success
    materialization = result.asset_materializations_for_node(build_export_asset(fc).node_def.name)[
        0
    ]
    table = materialization.metadata["dagster/table_name"].value
    assert table == ('"Anomalies".anomaly_scores' if schema else "anomaly_scores")
    engine = make_engine(url)
    assert select(engine, f"SELECT COUNT(*), MAX(model_version) FROM {table}") == [(5, 3)]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {ROWS_MATCH_SCORES: True}
    # a fresh warehouse has every documented table after the first export, notifications included
    assert {spec.name for spec in WAREHOUSE_TABLES} <= set(
        sa.inspect(engine).get_table_names(schema=schema)
    )
    engine.dispose()
