"""Export: ``anomaly_table`` writes a day's scores to the warehouse table BI tools read.

Idempotent per (feed, partition): re-running a partition replaces its rows in one
transaction (PostgreSQL loads use COPY). Views ``anomaly_daily_summary`` and
``anomaly_top`` are (re)created on top.
"""


import dagster as dg
import pandas as pd

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import WarehouseResource

ROWS_MATCH_SCORES = "rows_match_scores"


def anomaly_table_schema() -> dg.TableSchema:
    from pynomaly_core.export import ANOMALY_TABLE

    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.kind, constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in ANOMALY_TABLE.columns
        ]
    )


def build_export_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    key = fc.key("anomaly_table")

    @dg.asset(
        key=key,
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "explanations": dg.AssetIn(key=fc.key("explanations")),
        },
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"sql"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(ROWS_MATCH_SCORES, asset=key,
                              description="rows in the warehouse for this partition = rows scored")
        ],
        description=f"One row per scored `{feed.name}` record in the warehouse table `anomaly_scores`, with "
        "severity, p-value and SHAP explanation (replaced per partition in one transaction).",
    )
    def anomaly_table(
        context: dg.AssetExecutionContext,
        anomaly_scores: pd.DataFrame,
        explanations: pd.DataFrame,
        warehouse: WarehouseResource,
    ):
        from sqlalchemy import text

        from pynomaly_core.export import (
            ANOMALY_TABLE,
            create_views,
            ensure_table,
            replace_partition,
        )

        columns = [c.name for c in ANOMALY_TABLE.columns if c.name not in ("feed", "partition_date")]
        frame = anomaly_scores.copy()
        frame["record_key"] = frame["record_key"].astype(str)
        explained = explanations.drop_duplicates("record_key").assign(record_key=lambda f: f["record_key"].astype(str))
        frame = frame.merge(explained, on="record_key", how="left", validate="many_to_one")
        if len(frame) != len(anomaly_scores):
            raise dg.Failure(f"asset {key.to_user_string()}: joining explanations changed the row count")
        frame["run_id"] = context.run.run_id
        frame["scored_at"] = pd.Timestamp.now(tz="UTC")
        frame["record_key"] = frame["record_key"].astype(str)
        frame = frame[columns]

        engine = warehouse.engine()
        schema = warehouse.schema_name
        ensure_table(engine, ANOMALY_TABLE, schema=schema)
        written = replace_partition(engine, ANOMALY_TABLE, frame, feed=feed.name,
                                    partition_date=context.partition_key, schema=schema)
        create_views(engine, schema=schema)
        qualified = f"{schema}.{ANOMALY_TABLE.name}" if schema else ANOMALY_TABLE.name
        with engine.connect() as conn:
            stored = conn.execute(
                text(f"SELECT COUNT(*) FROM {qualified} WHERE feed = :feed AND partition_date = :day"),
                {"feed": feed.name, "day": context.partition_key},
            ).scalar_one()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(written),
                "dagster/column_schema": anomaly_table_schema(),
                "dagster/table_name": qualified,
                "warehouse": warehouse.dialect,
                "anomalies": int(frame["is_anomaly"].sum()),
                "explained_rows": int(frame["explanation_method"].notna().sum()),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=ROWS_MATCH_SCORES,
                    passed=int(stored) == len(frame),
                    metadata={"stored_rows": int(stored), "scored_rows": len(frame)},
                    description=f"{qualified}: {stored} rows stored for {feed.name}/{context.partition_key}, "
                    f"{len(frame)} scored",
                )
            ],
        )

    return anomaly_table
