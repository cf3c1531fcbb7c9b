"""Ingest: ``raw`` reads one partition (a UTC day or hour) from the feed's source, exactly as it is."""

import dagster as dg

from pynomaly_assets.feed_context import FeedContext, transient
from pynomaly_core.data.sources import SourceReadError, hour_rows, read_partition


def build_raw_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed

    @dg.asset(
        key=fc.key("raw"),
        partitions_def=fc.partitions_def,
        backfill_policy=fc.backfill_policy,
        group_name=feed.name,
        kinds={feed.source.kind},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        retry_policy=fc.io_retry_policy,
        description=f"Rows of feed `{feed.name}` for one UTC day, exactly as read from its "
        f"{feed.source.kind} source (CSV values kept as text so validation sees them unaltered).",
    )
    def raw(context: dg.AssetExecutionContext):
        days: dict = {}  # an hourly range reads each day's source once
        return fc.each_partition(context, lambda one: read_one(one, days))

    def read_one(context: dg.AssetExecutionContext, days: dict):
        day, hour = fc.partition_day(context), fc.partition_hour(context)
        try:
            if day not in days:
                days.clear()
                days[day] = read_partition(feed, day)
            part = days[day] if hour is None else hour_rows(feed, days[day], day, hour)
        except SourceReadError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "feed": feed.name,
                    "partition": context.partition_key,
                    "asset": fc.key("raw").to_user_string(),
                },
                # a dropped or refused database connection may work on the next attempt (feed
                # setting retries); a missing file or a bad query will not
                allow_retries=transient(exc.__cause__),
            ) from exc
        return dg.MaterializeResult(
            value=part.frame,
            metadata={
                "dagster/row_count": len(part.frame),
                "source": part.source,
                "columns": dg.MetadataValue.json(list(map(str, part.frame.columns))),
            },
        )

    return raw
