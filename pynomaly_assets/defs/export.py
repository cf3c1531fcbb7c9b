"""Export: ``anomaly_table`` writes a day's scores to the warehouse table BI tools read.

Idempotent per (feed, partition): re-running a partition replaces its rows in one
transaction (PostgreSQL loads use COPY). Every warehouse table (feedback, quarantine and
notifications too, so a fresh warehouse shows the whole documented set) is created or migrated
first, and the views ``anomaly_daily_summary``, ``anomaly_top`` and ``model_versions_in_use``
are (re)created on top.
"""

import dagster as dg
import pandas as pd

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import WarehouseResource

ROWS_MATCH_SCORES = "rows_match_scores"


def anomaly_table_schema() -> dg.TableSchema:
    from pynomaly_core.warehouse import ANOMALY_TABLE

    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name, c.kind, constraints=dg.TableColumnConstraints(nullable=c.nullable)
            )
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
            dg.AssetCheckSpec(
                ROWS_MATCH_SCORES,
                asset=key,
                description="rows in the warehouse for this partition = rows scored",
            )
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
        from pynomaly_core.warehouse import (
            ANOMALY_TABLE,
            anomaly_rows,
            count_partition,
            ensure_warehouse,
            replace_partition,
        )

        try:
            frame = anomaly_rows(
                anomaly_scores,
                explanations,
                run_id=context.run.run_id,
                scored_at=pd.Timestamp.now(tz="UTC"),
            )
        except ValueError as exc:
            raise dg.Failure(f"asset {key.to_user_string()}: {exc}") from exc
        engine, schema, day = warehouse.engine(), warehouse.schema_name, context.partition_key
        ensure_warehouse(engine, schema=schema)
        written = replace_partition(
            engine, ANOMALY_TABLE, frame, feed=feed.name, partition_date=day, schema=schema
        )
        stored = count_partition(
            engine, ANOMALY_TABLE, feed=feed.name, partition_date=day, schema=schema
        )
        return _materialization(fc, day, frame, written=written, stored=stored, warehouse=warehouse)

    return anomaly_table


def _materialization(
    fc: FeedContext,
    day: str,
    frame: pd.DataFrame,
    *,
    written: int,
    stored: int,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The table's metadata and the check that the warehouse holds every scored row of the partition."""
    from pynomaly_core.warehouse import ANOMALY_TABLE, qualified

    # as SQL names it: a mixed-case schema quoted ("Anomalies".anomaly_scores), so it can be pasted into a query
    table = qualified(warehouse.engine(), ANOMALY_TABLE.name, warehouse.schema_name)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(written),
            "dagster/column_schema": anomaly_table_schema(),
            "dagster/table_name": table,
            "warehouse": warehouse.dialect,
            "anomalies": int(frame["is_anomaly"].sum()),
            "explained_rows": int(frame["explanation_method"].notna().sum()),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=ROWS_MATCH_SCORES,
                passed=stored == len(frame),
                metadata={"stored_rows": stored, "scored_rows": len(frame)},
                description=f"{table}: {stored} rows stored for {fc.name}/{day}, {len(frame)} scored",
            )
        ],
    )
