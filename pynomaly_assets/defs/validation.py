"""Validation: ``validated`` applies the feed's pandera schema; failing rows go to quarantine.

Blocking checks keep bad partitions from reaching training and scoring:
``row_accounting`` (raw rows = valid rows + quarantined rows, exactly),
``schema_pass_rate`` (share of valid rows at or above ``validation.min_pass_rate``) and
``min_rows`` (at least ``validation.min_rows`` rows arrived).
"""

import datetime as dt
import json
import warnings

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import WarehouseResource
from pynomaly_core.data.config import ValidationSettings
from pynomaly_core.data.sources import partition_window
from pynomaly_core.data.validation import (
    SchemaMismatchError,
    ValidationResult,
    build_schema,
    validate_partition,
)

ROW_ACCOUNTING = "row_accounting"
SCHEMA_PASS_RATE = "schema_pass_rate"
MIN_ROWS = "min_rows"


def column_schema(fc: FeedContext) -> dg.TableSchema:
    feed = fc.feed
    cols = [
        dg.TableColumn(
            feed.record_key,
            "text",
            description="record key",
            constraints=dg.TableColumnConstraints(nullable=False, unique=True),
        ),
        dg.TableColumn(
            feed.event_time,
            "timestamp",
            description="event time (UTC)",
            constraints=dg.TableColumnConstraints(nullable=False),
        ),
    ]
    cols += [dg.TableColumn(c, "text", description="passthrough") for c in feed.passthrough]
    for spec in feed.features:
        rules = []
        if spec.min is not None:
            rules.append(f">= {spec.min}")
        if spec.max is not None:
            rules.append(f"<= {spec.max}")
        if spec.allowed:
            rules.append(f"in {spec.allowed}")
        cols.append(
            dg.TableColumn(
                spec.name,
                spec.type,
                description=f"feature; missing -> {spec.missing}",
                constraints=dg.TableColumnConstraints(nullable=spec.nullable, other=rules),
            )
        )
    if feed.label:
        cols.append(
            dg.TableColumn(feed.label, "int", description="ground-truth label (1 = anomaly)")
        )
    return dg.TableSchema(columns=cols)


def source_description(fc: FeedContext, day: dt.date) -> str:
    src = fc.feed.source
    path = getattr(src, "path", None)
    if path is not None:
        return fc.feed.resolve_path(path.replace("{date}", day.isoformat()))
    return f"feed {fc.name!r} ({src.kind} source), partition {day}"


def validated_dagster_type(fc: FeedContext) -> dg.DagsterType:
    """The output is type-checked against the feed's pandera schema (without the per-day window rule)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)  # dagster-pandera marks this beta
        return pandera_schema_to_dagster_type(build_schema(fc.feed))


def build_validated_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    key = fc.key("validated")
    settings = feed.validation

    @dg.asset(
        key=key,
        ins={"raw": dg.AssetIn(key=fc.key("raw"))},
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"pandera", "parquet"},
        io_manager_key="frame_io_manager",
        dagster_type=validated_dagster_type(fc),
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                ROW_ACCOUNTING,
                asset=key,
                blocking=True,
                description="raw rows = valid rows + quarantined rows, exactly",
            ),
            dg.AssetCheckSpec(
                SCHEMA_PASS_RATE,
                asset=key,
                blocking=True,
                description=f"share of rows passing the schema >= {settings.min_pass_rate}",
            ),
            dg.AssetCheckSpec(
                MIN_ROWS,
                asset=key,
                blocking=True,
                description=f"at least {settings.min_rows} rows in the partition",
            ),
        ],
        description=f"Typed, schema-valid rows of feed `{feed.name}`; rows that break a rule are "
        "written to the warehouse `quarantine` table with the column, rule and value.",
    )
    def validated(
        context: dg.AssetExecutionContext, raw: pd.DataFrame, warehouse: WarehouseResource
    ):
        day = fc.partition_day(context)
        start, end = partition_window(day)
        source = source_description(fc, day)
        try:
            result = validate_partition(
                raw, feed, source=source, partition_start=start, partition_end=end
            )
        except SchemaMismatchError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "feed": feed.name,
                    "partition": str(day),
                    "asset": key.to_user_string(),
                    "source": source,
                },
            ) from exc

        _write_quarantine(warehouse, fc, day, result.quarantine, run_id=context.run.run_id)
        rate = result.pass_rate
        return dg.MaterializeResult(
            value=result.valid,
            metadata={
                "dagster/row_count": result.valid_rows,
                "dagster/column_schema": column_schema(fc),
                "raw_rows": result.raw_rows,
                "quarantined_rows": result.quarantined_rows,
                "pass_rate": float(rate) if rate is not None else 0.0,
                "failures_by_rule": dg.MetadataValue.json(result.failures_by_rule()),
                "source": source,
            },
            check_results=_validation_checks(result, source, settings),
        )

    return validated


def _write_quarantine(
    warehouse: WarehouseResource,
    fc: FeedContext,
    day: dt.date,
    quarantine: pd.DataFrame,
    *,
    run_id: str,
) -> None:
    """Replace the day's rows of the warehouse ``quarantine`` table with this run's failed rows."""
    from pynomaly_core.warehouse import QUARANTINE_TABLE, ensure_table, replace_partition

    stamped = quarantine.assign(run_id=run_id, quarantined_at=pd.Timestamp.now(tz="UTC"))
    engine = warehouse.engine()
    ensure_table(engine, QUARANTINE_TABLE, schema=warehouse.schema_name)
    replace_partition(
        engine,
        QUARANTINE_TABLE,
        stamped,
        feed=fc.name,
        partition_date=day.isoformat(),
        schema=warehouse.schema_name,
    )


def _validation_checks(
    result: ValidationResult, source: str, settings: ValidationSettings
) -> list[dg.AssetCheckResult]:
    """The blocking checks of ``validated``: row accounting, schema pass rate and minimum rows."""
    rate = result.pass_rate
    accounting = dg.AssetCheckResult(
        check_name=ROW_ACCOUNTING,
        passed=result.accounting_holds,
        metadata={
            "raw_rows": result.raw_rows,
            "valid_rows": result.valid_rows,
            "quarantined_rows": result.quarantined_rows,
        },
        description=None
        if result.accounting_holds
        else (
            f"{source}: {result.raw_rows} raw rows != {result.valid_rows} valid + "
            f"{result.quarantined_rows} quarantined"
        ),
    )
    pass_rate = dg.AssetCheckResult(
        check_name=SCHEMA_PASS_RATE,
        passed=rate is not None and rate >= settings.min_pass_rate,
        metadata={
            "pass_rate": float(rate) if rate is not None else 0.0,
            "min_pass_rate": settings.min_pass_rate,
            "failures_by_rule": dg.MetadataValue.json(result.failures_by_rule()),
        },
        description=(
            f"{source}: no rows to validate"
            if rate is None
            else f"{source}: {rate:.1%} of rows passed (validation.min_pass_rate = {settings.min_pass_rate:.1%}); "
            f"top failures: {json.dumps(dict(list(result.failures_by_rule().items())[:3]))}"
        ),
    )
    min_rows = dg.AssetCheckResult(
        check_name=MIN_ROWS,
        passed=result.raw_rows >= settings.min_rows,
        metadata={"raw_rows": result.raw_rows, "min_rows": settings.min_rows},
        description=f"{source}: {result.raw_rows} rows (validation.min_rows = {settings.min_rows})",
    )
    return [accounting, pass_rate, min_rows]
