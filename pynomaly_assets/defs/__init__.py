"""Dagster definitions, one module per pipeline stage; each stage builds its assets per feed."""

import warnings

import dagster as dg

# A partitioned asset's checks declare its partitions_def, so each evaluation is recorded once, with
# its partition (without it the check history shows a partitioned "planned" row that never resolves,
# shown as Skipped, next to the result without a partition). Dagster 1.13 flags the parameter as a
# preview; it is the documented way to partition a check.
warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec",
    category=dg.PreviewWarning,
)
