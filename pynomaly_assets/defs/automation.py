"""Declarative automation (``schedules.trigger: automation``): each day's stages follow their upstream.

* ``raw`` is materialized on ``schedules.daily_cron`` (``hourly_cron`` for hourly feeds) for the
  partition that ended (:meth:`dagster.AutomationCondition.on_cron`), as the daily schedule would;
* ``validated`` and every daily stage after it (``anomaly_scores``, ``explanations``,
  ``drift_report``, ``detector_performance``, ``anomaly_table``) carry :func:`follows_upstream`:
  requested for a partition when an upstream partition of the same day updates — any day, not
  only the latest, so a re-ingested or backfilled day is followed too — once no upstream is
  missing or running and every upstream blocking check passed (a day whose validation failed is
  not scored). Updates of the model (``champion``, ``monitoring_reference``) are not followed: a
  retrain rescores through ``<feed>__retrain_sensor``, which knows which days it may rescore;
* ``<feed>__automation_sensor`` evaluates the conditions (the daemon runs it, default RUNNING).

Cron and arrival feeds get no condition and no automation sensor: nothing changes for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.names import TRIGGER_TAG

#: the partitioned stages that follow their upstream partition, in graph order
FOLLOWING_STAGES = (
    "validated",
    "anomaly_scores",
    "explanations",
    "drift_report",
    "detector_performance",
    "anomaly_table",
)
#: unpartitioned model assets whose updates the daily stages do not follow
MODEL_STAGES = ("champion", "monitoring_reference")


def automates(fc: FeedContext) -> bool:
    return fc.feed.schedules.trigger == "automation"


def follows_upstream(fc: FeedContext) -> dg.AutomationCondition:
    """Eager on every partition, not only the latest, and only past passed blocking checks.

    :meth:`dagster.AutomationCondition.eager` without its ``in_latest_time_window`` and its
    ``newly_missing`` parts (switching a feed to automation does not backfill history); the
    model assets are ignored for updates and blocking checks (a first champion's weak-evidence
    WARN is not a reason to stop scoring) but still count as missing (no champion: no request).
    """
    model = dg.AssetSelection.assets(*(fc.key(s) for s in MODEL_STAGES))
    return (
        dg.AutomationCondition.any_deps_updated().ignore(model).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(model)
    ).with_label("follows upstream partition")


def arrival_cron(fc: FeedContext) -> str:
    settings = fc.feed.schedules
    return settings.hourly_cron if fc.hourly else settings.daily_cron


def with_automation(fc: FeedContext, assets: Sequence[dg.AssetsDefinition]) -> list:
    """``assets`` with the feed's automation conditions (unchanged unless the feed automates)."""
    if not automates(fc):
        return list(assets)
    conditions: dict[dg.AssetKey, dg.AutomationCondition] = {
        fc.key("raw"): dg.AutomationCondition.on_cron(arrival_cron(fc), "UTC"),
        **{fc.key(s): follows_upstream(fc) for s in FOLLOWING_STAGES},
    }

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = conditions.get(spec.key)
        return (
            spec if condition is None else spec.replace_attributes(automation_condition=condition)
        )

    return list(dg.map_asset_specs(apply, assets))


def build_automation_sensor(fc: FeedContext) -> dg.AutomationConditionSensorDefinition | None:
    """``<feed>__automation_sensor`` for a feed with ``trigger: automation``, running by default."""
    if not automates(fc):
        return None
    return dg.AutomationConditionSensorDefinition(
        f"{fc.name}__automation_sensor",
        target=dg.AssetSelection.assets(fc.key("raw"), *(fc.key(s) for s in FOLLOWING_STAGES)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        run_tags={**fc.tags, TRIGGER_TAG: "automation"},
        description=f"Materializes `{fc.name}`'s raw on {arrival_cron(fc)} (UTC) and, for each day "
        "that updates, the stages after it (validated, scores, explanations, drift, performance, "
        "export), once its upstream blocking checks passed.",
    )
