"""Export: ``anomaly_table`` writes a day's scores to the warehouse table BI tools read.

Beside the scores, the scored rows' entity, passthrough columns and (flagged rows) feature values
go to ``anomaly_attributes``, replaced per partition like the scores.

Idempotent per (feed, partition): re-running a partition replaces its rows in one
transaction (PostgreSQL loads use COPY). Every warehouse table (feedback, quarantine and
notifications too, so a fresh warehouse shows the whole documented set) is created or migrated
first, and the views ``anomaly_daily_summary``, ``anomaly_top`` and ``model_versions_in_use``
are (re)created on top.
"""

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from pynomaly_assets.defs.validation import (
    FailedValidation,
    accepted_partitions,
    failed_validations,
    is_accepted,
    record_accepted,
)
from pynomaly_assets.feed_context import FeedContext, key_day
from pynomaly_assets.names import ACCEPT_FAILED_VALIDATION_TAG, FAILED_VALIDATION_ACCEPTED_KEY
from pynomaly_assets.resources import WarehouseResource

ROWS_MATCH_SCORES = "rows_match_scores"


#: what each exported column means, shown on the asset's Columns tab (docs/anomaly_table.md
#: has the long form); a column without one fails tests/assets/test_ui_truth.py
ANOMALY_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "feed": "feed name, from the feed's YAML file",
    "partition_date": "the UTC day the record belongs to; the unit of (re)loading",
    "record_key": "the record's key in its source table (as text); join back on this",
    "event_time": "the record's event time, UTC",
    "score": "raw anomaly score (higher = more anomalous); compare within one model_version",
    "normalized_score": "position of the score in the training-score distribution, 0..1",
    "is_anomaly": "the score is above the model's threshold",
    "severity": "none, low, medium, high or critical, from the p_value of flagged rows",
    "model_name": "detector, e.g. IForest",
    "model_version": "MLflow registered model version (pynomaly-<feed>) that scored the row",
    "run_id": "the Dagster run that wrote the row",
    "top_features": "for anomalies: JSON array of the features that explain the row (SHAP's feature_1..3 where explained)",
    "scored_at": "when the row was written (UTC)",
    "p_value": "share of the calibration rows scoring at least as high; small = rare",
    "explanation_method": "for the explained top anomalies: tree, kernel or permutation SHAP",
    **{
        f"feature_{i}": f"the input feature with the {rank} largest SHAP contribution"
        for i, rank in ((1, "1st"), (2, "2nd"), (3, "3rd"))
    },
    **{
        f"contribution_{i}": f"SHAP contribution of feature_{i} (positive = towards anomalous)"
        for i in (1, 2, 3)
    },
    "is_alert": "flagged and within the feed's alert budget (scoring.max_alerts_per_day)",
}


def anomaly_table_schema() -> dg.TableSchema:
    """The exported table's columns with type, nullability and meaning (``dagster/column_schema``)."""
    from pynomaly_core.warehouse import ANOMALY_TABLE

    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.kind,
                description=ANOMALY_COLUMN_DESCRIPTIONS.get(c.name),
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in ANOMALY_TABLE.columns
        ]
    )


def _scores_accepted(
    context: dg.AssetExecutionContext, fc: FeedContext, failed: FailedValidation
) -> bool:
    """Did the partition's scores come from a run that accepted this failed validation?"""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=fc.key("anomaly_scores"), asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return False
    value = records[0].asset_materialization.metadata.get(FAILED_VALIDATION_ACCEPTED_KEY)
    accepted = value.value if value is not None else None
    return (
        isinstance(accepted, dict)
        and context.partition_key in accepted
        and records[0].timestamp >= failed.evaluated_at
    )


def export_gate(context: dg.AssetExecutionContext, fc: FeedContext) -> dict:
    """Refuse to export a partition whose validation failed a blocking check (``dg.Failure``).

    Scores stored before the day was re-ingested and failed describe data that no longer passes;
    only scores made after the failure with the user's override (or the run tag) are exported.
    """
    partition = context.partition_key
    failed = failed_validations(context.instance, fc.key("validated"), [partition]).get(partition)
    if failed is None:
        return {}
    if is_accepted(partition, accepted_partitions(context, [])) or _scores_accepted(
        context, fc, failed
    ):
        return record_accepted(context, {partition: failed})
    raise dg.Failure(
        f"feed {fc.name!r}: {failed.describe()}, so {context.asset_key.to_user_string()} refuses to "
        f"export it. Fix the source and re-materialize {fc.key('validated').to_user_string()} (job "
        f"{fc.name}__ingest), or rescore it with the override (run config accept_failed_validation on "
        f"{fc.key('anomaly_scores').to_user_string()}, or the run tag "
        f"{ACCEPT_FAILED_VALIDATION_TAG}={partition}).",
        allow_retries=False,
    )


def build_export_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    key = fc.key("anomaly_table")

    @dg.asset(
        key=key,
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "explanations": dg.AssetIn(key=fc.key("explanations")),
            # the scored rows' entity, passthrough and feature values -> anomaly_attributes
            "validated": dg.AssetIn(key=fc.key("validated")),
        },
        partitions_def=fc.partitions_def,
        backfill_policy=fc.backfill_policy,
        group_name=feed.name,
        kinds={"sql"},
        tags=fc.tags,
        # a warehouse restart or dropped connection fails an attempt; the write replaces the
        # partition in one transaction, so a retry leaves exactly one copy
        retry_policy=fc.io_retry_policy,
        check_specs=[
            dg.AssetCheckSpec(
                ROWS_MATCH_SCORES,
                asset=key,
                partitions_def=fc.partitions_def,  # one history row per evaluation, with its day
                description="rows in the warehouse for this partition = rows scored",
            )
        ],
        description=f"One row per scored `{feed.name}` record in the warehouse table `anomaly_scores`, with "
        "severity, p-value and SHAP explanation (replaced per partition in one transaction).",
    )
    def anomaly_table(
        context: dg.AssetExecutionContext,
        anomaly_scores: Any,
        explanations: Any,
        validated: Any,
        warehouse: WarehouseResource,
    ):
        # frames, or {partition: frame} in a range run (a single-run backfill)
        return fc.each_partition(
            context,
            export_one,
            anomaly_scores=anomaly_scores,
            explanations=explanations,
            validated=validated,
            warehouse=warehouse,
        )

    def export_one(
        context: dg.AssetExecutionContext,
        anomaly_scores: pd.DataFrame,
        explanations: pd.DataFrame,
        validated: pd.DataFrame,
        warehouse: WarehouseResource,
    ):
        from pynomaly_core.warehouse import (
            ANOMALY_TABLE,
            ATTRIBUTE_TABLE,
            anomaly_rows,
            attribute_rows,
            count_partition,
            ensure_warehouse,
            replace_partition,
        )

        accepted = export_gate(context, fc)
        try:
            frame = anomaly_rows(
                anomaly_scores,
                explanations,
                run_id=context.run.run_id,
                scored_at=pd.Timestamp.now(tz="UTC"),
            )
            attributes = attribute_rows(
                anomaly_scores,
                validated,
                entity=feed.entity,
                passthrough=feed.passthrough,
                features=feed.feature_names,
                masked=feed.pii_columns,
            )
        except ValueError as exc:
            raise dg.Failure(f"asset {key.to_user_string()}: {exc}", allow_retries=False) from exc
        engine, schema, day = warehouse.engine(), warehouse.schema_name, context.partition_key
        ensure_warehouse(engine, schema=schema)
        # an hourly partition is its day's rows whose event time lies in the hour
        where: dict[str, Any] = {
            "feed": feed.name,
            "partition_date": str(key_day(day)),
            "schema": schema,
            "between": hour_of(day),
        }
        # attributes first: a failure between the two loads leaves the scores of the last export
        attribute_count = replace_partition(engine, ATTRIBUTE_TABLE, attributes, **where)
        written = replace_partition(engine, ANOMALY_TABLE, frame, **where)
        stored = count_partition(engine, ANOMALY_TABLE, **where)
        return _materialization(
            fc,
            day,
            frame,
            written=written,
            stored=stored,
            warehouse=warehouse,
            extra={**accepted, "attribute_rows": int(attribute_count)},
        )

    def hour_of(partition: str) -> tuple[str, dt.datetime, dt.datetime] | None:
        if not fc.hourly:
            return None
        start, end = fc.window(partition)
        return ("event_time", start.to_pydatetime(), end.to_pydatetime())

    return anomaly_table


def _materialization(
    fc: FeedContext,
    day: str,
    frame: pd.DataFrame,
    *,
    written: int,
    stored: int,
    warehouse: WarehouseResource,
    extra: dict | None = None,
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
            **(extra or {}),
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
