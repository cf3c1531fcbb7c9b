"""Weekly maintenance (placeholder until the maintenance assets land)."""

from __future__ import annotations

import dagster as dg

from pynomaly_assets.feed_context import FeedContext


def build_maintenance_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    return []
