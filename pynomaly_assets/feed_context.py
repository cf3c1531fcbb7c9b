"""What every stage needs to know about a feed: its config, asset keys and partitions."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import dagster as dg

from pynomaly_core.data.config import FEEDS_DIR_ENV, FeedConfig, load_feeds


def feeds_dir() -> Path:
    """``$PYNOMALY_FEEDS_DIR``, else the feeds shipped with the code location (the demo feed)."""
    env = os.environ.get(FEEDS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "feeds"


def load_feed_contexts(directory: Path | None = None) -> list[FeedContext]:
    return [FeedContext(feed) for feed in load_feeds(directory or feeds_dir())]


@dataclass(frozen=True)
class FeedContext:
    feed: FeedConfig

    @property
    def name(self) -> str:
        return self.feed.name

    def key(self, stage: str) -> dg.AssetKey:
        """Asset key ``[feed, stage]``: the feed name prefixes every asset so feeds never collide."""
        return dg.AssetKey([self.feed.name, stage])

    @cached_property
    def partitions_def(self) -> dg.DailyPartitionsDefinition:
        return dg.DailyPartitionsDefinition(
            start_date=self.feed.partitioning.start_date.isoformat(),
            timezone="UTC",
            end_offset=self.feed.partitioning.end_offset,
        )

    @cached_property
    def weekly_partitions_def(self) -> dg.WeeklyPartitionsDefinition:
        """Monday-to-Sunday weeks (UTC) of the weekly maintenance assets, keyed by their Monday."""
        return dg.WeeklyPartitionsDefinition(
            start_date=self.feed.partitioning.start_date.isoformat(),
            day_offset=1,
            timezone="UTC",
        )

    def partition_day(self, context: dg.AssetExecutionContext) -> dt.date:
        return dt.date.fromisoformat(context.partition_key)

    @property
    def tags(self) -> dict[str, str]:
        return {"feed": self.feed.name}
