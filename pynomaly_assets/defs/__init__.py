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
# raw, validated, scores and export take a single-run backfill policy (docs/feeds.md); the
# parameter is beta in Dagster 1.13 and its notice, once per asset per load, buried the demo's output
warnings.filterwarnings(
    "ignore", message="Parameter `backfill_policy` of function `asset`", category=dg.BetaWarning
)
