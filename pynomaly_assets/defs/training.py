"""Training: ``training_window`` gathers a bounded window of validated days.

The window ends at the latest materialized ``validated`` partition (or ``end_date`` in
the run config) and spans ``training.window_days`` days; it never reads all partitions.
The candidates and the champion trained on it live in :mod:`pynomaly_assets.defs.lifecycle`.
"""


import datetime as dt

import dagster as dg
import pandas as pd

from pynomaly_assets.defs.lifecycle import build_lifecycle_assets
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import FrameStoreResource


class TrainingWindowConfig(dg.Config):
    """Run config of ``training_window``."""

    end_date: str | None = None
    """Last day of the window (YYYY-MM-DD); default: the latest materialized validated partition."""
    window_days: int | None = None
    """Override of the feed's ``training.window_days``."""


def build_training_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    feed = fc.feed
    validated_key = fc.key("validated")

    @dg.asset(
        key=fc.key("training_window"),
        deps=[validated_key],
        group_name=feed.name,
        kinds={"parquet"},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"The last `training.window_days` ({feed.training.window_days}) days of validated "
        f"`{feed.name}` rows that the detector is fitted on (sampled down to `training.max_rows`).",
    )
    def training_window(
        context: dg.AssetExecutionContext, config: TrainingWindowConfig, frame_store: FrameStoreResource
    ):
        days = config.window_days or feed.training.window_days
        materialized = sorted(context.instance.get_materialized_partitions(validated_key))
        if config.end_date is not None:
            try:
                end = dt.date.fromisoformat(config.end_date)
            except ValueError:
                raise dg.Failure(f"training_window config end_date={config.end_date!r} is not YYYY-MM-DD") from None
        elif materialized:
            end = dt.date.fromisoformat(materialized[-1])
        else:
            raise dg.Failure(
                f"asset {validated_key.to_user_string()} has no materialized partitions yet; "
                "materialize some days of the feed before training"
            )
        wanted = [(end - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]
        present = [d for d in wanted if d in set(materialized)]
        missing = [d for d in wanted if d not in set(materialized)]
        store = frame_store.store()
        frames = [store.read(list(validated_key.path), d) for d in present]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        total = len(frame)
        if total < feed.training.min_rows:
            raise dg.Failure(
                f"feed {feed.name!r}: training window {wanted[0]}..{wanted[-1]} has {total} validated rows, "
                f"fewer than training.min_rows = {feed.training.min_rows} "
                f"(materialized days in window: {present or 'none'})"
            )
        cap = feed.training.max_rows
        if cap is not None and total > cap:
            frame = frame.sample(n=cap, random_state=feed.detector.random_state or 0).reset_index(drop=True)
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "window_start": wanted[0],
                "window_end": wanted[-1],
                "partitions_used": dg.MetadataValue.json(present),
                "partitions_missing": dg.MetadataValue.json(missing),
                "rows_before_sampling": total,
            },
        )

    return [training_window, *build_lifecycle_assets(fc)]
