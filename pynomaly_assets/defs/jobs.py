"""Jobs and schedules per feed.

* ``<feed>__ingest`` — raw and validated for one day;
* ``<feed>__train`` — training window, detector candidates and champion (unpartitioned);
* ``<feed>__score`` — anomaly scores, explanations and the exported table for one day;
* ``<feed>__daily`` — ingest + score; its schedule runs each UTC day at 01:00 for the
  previous day (stopped by default: turn it on in the UI or with ``dagster schedule start``).
"""

from __future__ import annotations

import dagster as dg

from pynomaly_assets.feed_context import FeedContext


def build_jobs(fc: FeedContext) -> tuple[list, list]:
    k = fc.key
    ingest = dg.define_asset_job(
        f"{fc.name}__ingest", selection=dg.AssetSelection.assets(k("raw"), k("validated")),
        partitions_def=fc.partitions_def, tags=fc.tags,
        description=f"Read and validate one day of `{fc.name}`.",
    )
    train = dg.define_asset_job(
        f"{fc.name}__train", selection=dg.AssetSelection.assets(k("training_window"), k("detector_candidates"), k("champion")),
        tags=fc.tags, description=f"Train `{fc.name}` candidates on the training window and choose the champion.",
    )
    score = dg.define_asset_job(
        f"{fc.name}__score",
        selection=dg.AssetSelection.assets(k("anomaly_scores"), k("explanations"), k("anomaly_table")),
        partitions_def=fc.partitions_def, tags=fc.tags,
        description=f"Score, explain and export one validated day of `{fc.name}`.",
    )
    daily = dg.define_asset_job(
        f"{fc.name}__daily",
        selection=dg.AssetSelection.assets(
            k("raw"), k("validated"), k("anomaly_scores"), k("explanations"), k("anomaly_table")
        ),
        partitions_def=fc.partitions_def, tags=fc.tags,
        description=f"Ingest, validate, score, explain and export one day of `{fc.name}`.",
    )
    schedule = dg.build_schedule_from_partitioned_job(
        daily, hour_of_day=1, minute_of_hour=0, name=f"{fc.name}__daily_schedule",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return [ingest, train, score, daily], [schedule]
