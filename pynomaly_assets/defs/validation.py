"""Validation: ``validated`` applies the feed's pandera schema; failing rows go to quarantine.

Blocking checks keep bad partitions from reaching training and scoring:
``row_accounting`` (raw rows = valid rows + quarantined rows, exactly),
``schema_pass_rate`` (share of valid rows at or above ``validation.min_pass_rate``) and
``min_rows`` (at least ``validation.min_rows`` rows arrived).

Dagster's blocking checks stop downstream steps only in the run that evaluated them, so the
scoring, export and training assets also read a partition's latest verdict from the instance
(:func:`failed_validations`) and refuse a failed day in any later run, unless the user accepts
it (run config ``accept_failed_validation`` or the run tag ``pynomaly/accept_failed_validation``),
which is logged and recorded in the metadata (``failed_validation_accepted``).
"""

import datetime as dt
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type
from pydantic import Field

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.metadata import significant
from pynomaly_assets.names import ACCEPT_FAILED_VALIDATION_TAG, FAILED_VALIDATION_ACCEPTED_KEY
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
        backfill_policy=fc.backfill_policy,
        group_name=feed.name,
        kinds={"pandera", "parquet"},
        io_manager_key="frame_io_manager",
        dagster_type=fc.range_type(validated_dagster_type(fc)),
        tags=fc.tags,
        # the quarantine write goes to the warehouse: a restart fails an attempt, not the run
        retry_policy=fc.io_retry_policy,
        check_specs=[
            dg.AssetCheckSpec(
                ROW_ACCOUNTING,
                asset=key,
                partitions_def=fc.partitions_def,  # one history row per evaluation, with its day
                blocking=True,
                description="raw rows = valid rows + quarantined rows, exactly",
            ),
            dg.AssetCheckSpec(
                SCHEMA_PASS_RATE,
                asset=key,
                partitions_def=fc.partitions_def,  # one history row per evaluation, with its day
                blocking=True,
                description=f"share of rows passing the schema >= {settings.min_pass_rate}",
            ),
            dg.AssetCheckSpec(
                MIN_ROWS,
                asset=key,
                partitions_def=fc.partitions_def,  # one history row per evaluation, with its day
                blocking=True,
                description=f"at least {settings.min_rows} rows in the partition",
            ),
        ],
        description=f"Typed, schema-valid rows of feed `{feed.name}`; rows that break a rule are "
        "written to the warehouse `quarantine` table with the column, rule and value.",
    )
    def validated(context: dg.AssetExecutionContext, raw: Any, warehouse: WarehouseResource):
        # raw: a frame, or {partition: frame} in a range run (checked per partition below)
        return fc.each_partition(context, validate_one, raw=raw, warehouse=warehouse)

    def validate_one(
        context: dg.AssetExecutionContext, raw: pd.DataFrame, warehouse: WarehouseResource
    ):
        day, hour = fc.partition_day(context), fc.partition_hour(context)
        start, end = partition_window(day, hour)
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
                    "partition": context.partition_key,
                    "asset": key.to_user_string(),
                    "source": source,
                },
                allow_retries=False,  # the same file fails the same way
            ) from exc

        _write_quarantine(
            warehouse, fc, day, result.quarantine, run_id=context.run.run_id, hour=hour
        )
        rate = result.pass_rate
        return dg.MaterializeResult(
            value=result.valid,
            metadata={
                "dagster/row_count": result.valid_rows,
                "dagster/column_schema": column_schema(fc),
                "raw_rows": result.raw_rows,
                "quarantined_rows": result.quarantined_rows,
                "pass_rate": significant(rate) if rate is not None else 0.0,
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
    hour: int | None = None,
) -> None:
    """Replace the day's rows of the warehouse ``quarantine`` table with this run's failed rows.

    An hourly partition (``hour``) replaces only its hour's rows of the day and keeps the other
    hours' (by the event time in ``row_json``; rows without a readable one belong to hour 0, as
    :func:`~pynomaly_core.data.sources.hour_rows` reads them).
    """
    from pynomaly_core.warehouse import QUARANTINE_TABLE, ensure_table, replace_partition

    stamped = quarantine.assign(run_id=run_id, quarantined_at=pd.Timestamp.now(tz="UTC"))
    engine = warehouse.engine()
    ensure_table(engine, QUARANTINE_TABLE, schema=warehouse.schema_name)
    if hour is not None:
        kept = _other_hours(engine, fc, day, hour, warehouse.schema_name)
        stamped = pd.concat([kept, stamped], ignore_index=True) if len(kept) else stamped
    replace_partition(
        engine,
        QUARANTINE_TABLE,
        stamped,
        feed=fc.name,
        partition_date=day.isoformat(),
        schema=warehouse.schema_name,
    )


def _other_hours(engine, fc: FeedContext, day: dt.date, hour: int, schema: str | None):
    """The day's stored quarantine rows of hours other than ``hour`` (frame columns only)."""
    from pynomaly_core.data.timestamps import to_utc
    from pynomaly_core.warehouse import QUARANTINE_TABLE
    from pynomaly_core.warehouse import read_partition as read_rows

    stored = read_rows(
        engine, QUARANTINE_TABLE, feed=fc.name, partition_date=day.isoformat(), schema=schema
    )
    columns = [c.name for c in QUARANTINE_TABLE.frame_columns]
    if stored.empty:
        return stored[columns]
    event_time = fc.feed.event_time
    raw = stored["row_json"].map(lambda row: row.get(event_time) if isinstance(row, dict) else None)
    times = to_utc(raw.map(lambda v: "" if v is None else str(v)), zone=fc.feed.event_time_zone)
    hours = times.times.dt.hour.fillna(0).astype(int)
    return stored.loc[(hours != hour).to_numpy(), columns].reset_index(drop=True)


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
            "pass_rate": significant(rate) if rate is not None else 0.0,
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


# ------------------------------------------------------------------ blocking checks across runs
#: the checks of ``validated`` whose failure keeps a partition out of scoring, export and training
BLOCKING_CHECKS = (ROW_ACCOUNTING, SCHEMA_PASS_RATE, MIN_ROWS)


@dataclass(frozen=True)
class FailedValidation:
    """A partition whose latest validation failed one or more blocking checks."""

    partition: str
    #: {check name: the failed evaluation's description}
    checks: dict[str, str]
    #: the run that materialized the partition and evaluated its checks
    run_id: str
    #: when that materialization was stored (epoch seconds)
    evaluated_at: float

    def describe(self) -> str:
        failed = "; ".join(f"{name}: {text}" for name, text in self.checks.items())
        return (
            f"partition {self.partition} failed blocking check(s) in run {self.run_id} ({failed})"
        )


def _failed_checks(instance: dg.DagsterInstance, run_id: str, target: int) -> dict[str, str]:
    """{check: description} of the blocking checks that failed on materialization ``target``.

    The checks of ``validated`` are evaluated in the step that materializes the partition, so
    the verdict on a partition is in that run's events, each evaluation naming the
    materialization it judged (a run that validates many partitions holds one per partition).
    Read with public instance APIs: Dagster 1.13 records the partition of a check evaluation
    only for partitioned check specs, a preview feature.
    """
    failed: dict[str, str] = {}
    cursor = None
    while True:
        page = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=500
        )
        for record in page.records:
            evaluation = record.event_log_entry.asset_check_evaluation
            if evaluation is None:
                continue
            judged = evaluation.target_materialization_data
            if (
                evaluation.check_name in BLOCKING_CHECKS
                and not evaluation.passed
                and judged is not None
                and judged.storage_id == target
            ):
                failed[evaluation.check_name] = evaluation.description or "failed"
        if not page.has_more:
            return failed
        cursor = page.cursor


def failed_validations(
    instance: dg.DagsterInstance, validated_key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, FailedValidation]:
    """The partitions (among ``partitions``) whose latest materialization failed a blocking check.

    Read from the instance, so a failure in the ingest run keeps the day out of every later
    scoring, export and training run, until a re-ingest passes the checks. A re-ingest that
    fails before materializing (a source error) leaves the last verdict standing, as it leaves
    the last data.
    """
    out: dict[str, FailedValidation] = {}
    for partition in partitions:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=validated_key, asset_partitions=[partition]), limit=1
        ).records
        if not records:
            continue
        latest = records[0]
        checks = _failed_checks(instance, latest.run_id, latest.storage_id)
        if checks:
            out[partition] = FailedValidation(partition, checks, latest.run_id, latest.timestamp)
    return out


class AcceptFailedValidation(dg.Config):
    """Run config shared by the assets that refuse partitions whose validation failed."""

    accept_failed_validation: list[str] = Field(default_factory=list)
    """Partition keys (or ``"*"`` for all) to use although a blocking check of ``validated``
    failed for them; the run tag ``pynomaly/accept_failed_validation`` (comma-separated) does the
    same for every asset of a run. Each use is logged and recorded in the metadata."""


def accepted_partitions(context: dg.AssetExecutionContext, configured: Sequence[str]) -> set[str]:
    """The partitions the user accepts despite failed validation: run config plus the run tag."""
    tag = context.run.tags.get(ACCEPT_FAILED_VALIDATION_TAG, "")
    return {p.strip() for p in [*configured, *tag.split(",")] if p.strip()}


def is_accepted(partition: str, accepted: set[str]) -> bool:
    return "*" in accepted or partition in accepted


def accept_hint(asset: dg.AssetKey, op: str, partition: str) -> str:
    """What a user sets to use ``partition`` anyway (named in every refusal)."""
    return (
        f"to use it anyway, set the run tag {ACCEPT_FAILED_VALIDATION_TAG}={partition} or the run "
        f"config ops: {{{op}: {{config: {{accept_failed_validation: [{partition!r}]}}}}}} "
        f"on {asset.to_user_string()}"
    )


def record_accepted(
    context: dg.AssetExecutionContext, accepted: dict[str, FailedValidation]
) -> dict:
    """Log each accepted failed partition (the event log keeps it) and return the metadata entry."""
    for failed in accepted.values():
        context.log.warning(
            f"{context.asset_key.to_user_string()}: {failed.describe()}; used anyway because the "
            f"user accepted it (run config accept_failed_validation or tag {ACCEPT_FAILED_VALIDATION_TAG})"
        )
    return {
        FAILED_VALIDATION_ACCEPTED_KEY: dg.MetadataValue.json(
            {p: sorted(f.checks) for p, f in accepted.items()}
        )
    }
