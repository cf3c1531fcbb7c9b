"""Ingest: ``raw`` reads one daily partition from the feed's source, exactly as it is."""

import dagster as dg

from pynomaly_assets.feed_context import FeedContext
from pynomaly_core.data.sources import SourceReadError, read_partition


def build_raw_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed

    @dg.asset(
        key=fc.key("raw"),
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={feed.source.kind},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"Rows of feed `{feed.name}` for one UTC day, exactly as read from its "
        f"{feed.source.kind} source (CSV values kept as text so validation sees them unaltered).",
    )
    def raw(context: dg.AssetExecutionContext):
        day = fc.partition_day(context)
        try:
            part = read_partition(feed, day)
        except SourceReadError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "feed": feed.name,
                    "partition": str(day),
                    "asset": fc.key("raw").to_user_string(),
                },
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
