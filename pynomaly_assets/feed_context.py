"""What every stage needs to know about a feed: its config, asset keys and partitions.

A feed is partitioned per UTC day (keys ``2026-01-01``) or per UTC hour (keys
``2026-01-01-13:00``, ``partitioning.granularity: hourly``). The assets that can process a range
of partitions in one run (ingest, validation, scoring, export) carry :attr:`FeedContext.backfill_policy`
and run their one-partition body once per partition of the run through
:meth:`FeedContext.each_partition`, which records each partition's metadata and checks as if it had
had its own run. A run of one partition (a schedule's, a sensor's) runs the body exactly as before.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from pynomaly_core.data.config import FEEDS_DIR_ENV, FeedConfig, load_feeds

#: how Dagster's HourlyPartitionsDefinition writes a partition key (``2026-01-01-13:00``)
HOURLY_KEY_FORMAT = "%Y-%m-%d-%H:%M"


def feeds_dir() -> Path:
    """``$PYNOMALY_FEEDS_DIR``, else the feeds shipped with the code location (the demo feed)."""
    env = os.environ.get(FEEDS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "feeds"


def transient(error: BaseException | None) -> bool:
    """Is ``error`` a connection problem that a retry may outlive (a restart, a dropped link)?"""
    if error is None:
        return False
    import sqlalchemy as sa

    return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError) or bool(
        getattr(error, "connection_invalidated", False)
    )


def load_feed_contexts(directory: Path | None = None) -> list[FeedContext]:
    return [FeedContext(feed) for feed in load_feeds(directory or feeds_dir())]


def key_day(key: str) -> dt.date:
    """The UTC day of a daily or hourly partition key."""
    return dt.date.fromisoformat(str(key)[:10])


def key_hour(key: str) -> int | None:
    """The UTC hour of an hourly partition key (``2026-01-01-13:00`` -> 13); None for a daily key."""
    key = str(key)
    return None if len(key) == 10 else dt.datetime.strptime(key, HOURLY_KEY_FORMAT).hour


def partitions_by_day(keys: list[str]) -> dict[str, list[str]]:
    """``{day: its partition keys}`` (a daily key is its own day's only key), keys in order."""
    days: dict[str, list[str]] = {}
    for key in sorted(keys):
        days.setdefault(str(key)[:10], []).append(key)
    return days


@dataclass(frozen=True)
class FeedContext:
    feed: FeedConfig

    @property
    def name(self) -> str:
        return self.feed.name

    def key(self, stage: str) -> dg.AssetKey:
        """Asset key ``[feed, stage]``: the feed name prefixes every asset so feeds never collide."""
        return dg.AssetKey([self.feed.name, stage])

    @property
    def hourly(self) -> bool:
        return self.feed.partitioning.granularity == "hourly"

    @cached_property
    def partitions_def(self) -> dg.TimeWindowPartitionsDefinition:
        """UTC days, or UTC hours for ``partitioning.granularity: hourly`` (from 00:00 of ``start_date``)."""
        settings = self.feed.partitioning
        if self.hourly:
            return dg.HourlyPartitionsDefinition(
                start_date=f"{settings.start_date.isoformat()}-00:00",
                timezone="UTC",
                end_offset=settings.end_offset,
            )
        return dg.DailyPartitionsDefinition(
            start_date=settings.start_date.isoformat(),
            timezone="UTC",
            end_offset=settings.end_offset,
        )

    @cached_property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """A backfill of the range-capable assets: one run, or ``max_partitions_per_run`` partitions a run.

        One run per partition costs a run's start-up per partition (a year of hours: 8,760 runs);
        these assets' bodies loop over the run's partitions instead (:meth:`each_partition`).
        """
        limit = self.feed.partitioning.max_partitions_per_run
        if limit is None:
            return dg.BackfillPolicy.single_run()
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=limit)

    @cached_property
    def weekly_partitions_def(self) -> dg.WeeklyPartitionsDefinition:
        """Monday-to-Sunday weeks (UTC) of the weekly maintenance assets, keyed by their Monday."""
        return dg.WeeklyPartitionsDefinition(
            start_date=self.feed.partitioning.start_date.isoformat(),
            day_offset=1,
            timezone="UTC",
        )

    @property
    def io_retry_policy(self) -> dg.RetryPolicy | None:
        """The step retries of the feed's I/O steps (``retries``; None when ``max_retries: 0``)."""
        settings = self.feed.retries
        if settings.max_retries == 0:
            return None
        return dg.RetryPolicy(
            max_retries=settings.max_retries,
            delay=settings.delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS if settings.jitter else None,
        )

    def retry_requested(self, context: dg.AssetExecutionContext) -> dg.RetryRequested:
        """A retry of a step that has no retry policy (the work around its I/O is not worth
        repeating on any error), raised on a :func:`transient` warehouse error: the feed's
        ``retries`` settings, the same exponential backoff and jitter as the policy."""
        import random

        settings = self.feed.retries
        wait = settings.delay_seconds * 2**context.retry_number
        if settings.jitter:
            wait += random.uniform(-wait, wait)  # nosec B311: jitter spreads reconnects, no secret
        return dg.RetryRequested(max_retries=settings.max_retries, seconds_to_wait=max(0.0, wait))

    def partition_day(self, context: dg.AssetExecutionContext) -> dt.date:
        """The UTC day of the run's partition (the day an hourly partition belongs to)."""
        return key_day(context.partition_key)

    def partition_hour(self, context: dg.AssetExecutionContext) -> int | None:
        """The UTC hour of the run's partition; None for a daily feed."""
        return key_hour(context.partition_key) if self.hourly else None

    def window(self, key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """``[start, end)`` (UTC) of partition ``key``: its day or its hour."""
        window = self.partitions_def.time_window_for_partition_key(key)
        return pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert(
            "UTC"
        )

    @property
    def tags(self) -> dict[str, str]:
        return {"feed": self.feed.name}

    def each_partition(
        self,
        context: dg.AssetExecutionContext,
        body: Callable[..., dg.MaterializeResult],
        **inputs: Any,
    ) -> dg.MaterializeResult:
        """Run a one-partition asset ``body(context, **inputs)`` for every partition of the run.

        One partition: ``body`` runs as it always has. A range (a single-run backfill): ``body``
        runs once per partition with a context whose ``partition_key`` is that partition and
        with each input's value for it (a partitioned input arrives as ``{partition: value}``).
        Each partition's metadata goes on its own materialization, each partition's check
        results are recorded as evaluations of that partition, the values are returned as
        ``{partition: value}`` (the IO managers store each), and the run's own check results
        pass only when every partition's passed. A failing partition fails the run.
        """
        keys = context.partition_keys
        if len(keys) <= 1:
            return body(context, **inputs)
        values: dict[str, Any] = {}
        checks: dict[str, list[tuple[str, dg.AssetCheckResult]]] = {}
        for key in keys:
            one = _OnePartition(context, key, self.window(key))
            result = body(one, **{name: _value_for(v, key) for name, v in inputs.items()})
            if result.value is not None:
                values[key] = result.value
            context.add_asset_metadata(dict(result.metadata or {}), partition_key=key)
            for check in result.check_results or []:
                evaluation = _partition_evaluation(context, check, key)
                context.log_event(evaluation)
                checks.setdefault(evaluation.check_name, []).append((key, check))
        return dg.MaterializeResult(
            value=values or None,
            metadata={"partitions_in_run": len(keys), "first": keys[0], "last": keys[-1]},
            check_results=[_range_result(name, results) for name, results in checks.items()],
        )

    def range_type(self, inner: dg.DagsterType) -> dg.DagsterType:
        """``inner``, also accepting the ``{partition: value}`` of a range, each value checked by ``inner``."""

        def check(context: Any, value: Any) -> dg.TypeCheck:
            if not isinstance(value, Mapping):
                return inner.type_check(context, value)
            for key, one in value.items():
                result = inner.type_check(context, one)
                if not result.success:
                    return dg.TypeCheck(False, description=f"partition {key}: {result.description}")
            return dg.TypeCheck(True)

        return dg.DagsterType(
            type_check_fn=check,
            key=f"{inner.key}_or_range",
            name=inner.unique_name,
            description=inner.description,
            metadata=inner.metadata,
        )


def _value_for(value: Any, key: str) -> Any:
    """A partitioned input's value for ``key`` (ranges load as ``{partition: value}``)."""
    return value[key] if isinstance(value, Mapping) and key in value else value


def _partition_evaluation(
    context: dg.AssetExecutionContext, check: dg.AssetCheckResult, key: str
) -> dg.AssetCheckEvaluation:
    """``check`` as an evaluation of partition ``key`` (logged in the run like a check's own result)."""
    if check.check_name is None:
        raise ValueError(
            f"asset {context.asset_key.to_user_string()}: a check result of a multi-partition "
            "run must set check_name"
        )
    return dg.AssetCheckEvaluation(
        asset_key=check.asset_key or context.asset_key,
        check_name=check.check_name,
        passed=check.passed,
        metadata={**(check.metadata or {}), "partition": key},
        severity=check.severity,
        description=check.description,
        partition=key,
    )


def _range_result(name: str, results: list[tuple[str, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    """A check over a range: passed when every partition passed, at the worst failing severity."""
    failed = [(key, r) for key, r in results if not r.passed]
    severity = (
        dg.AssetCheckSeverity.ERROR
        if any(r.severity == dg.AssetCheckSeverity.ERROR for _, r in failed)
        else dg.AssetCheckSeverity.WARN
        if failed
        else dg.AssetCheckSeverity.ERROR
    )
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=severity,
        metadata={
            "partitions": len(results),
            "failed_partitions": dg.MetadataValue.json([key for key, _ in failed][:100]),
        },
        description=f"{len(results) - len(failed)} of {len(results)} partitions passed"
        + (f"; first failure ({failed[0][0]}): {failed[0][1].description}" if failed else ""),
    )


class _OnePartition:
    """A run's context narrowed to one of its partitions: everything else is the run's context."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        key: str,
        window: tuple[pd.Timestamp, pd.Timestamp],
    ) -> None:
        self._context = context
        self.partition_key = key
        self.partition_keys = [key]
        self.partition_key_range = dg.PartitionKeyRange(key, key)
        self.partition_time_window = dg.TimeWindow(window[0], window[1])
        self.has_partition_key = True
        self.has_partition_key_range = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
