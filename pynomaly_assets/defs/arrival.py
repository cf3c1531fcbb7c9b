"""Runs when data arrives, and a check that it arrived in time.

* ``<feed>__arrival_sensor`` (file sources, local or remote) — each tick lists the files of the
  last ``schedules.arrival_lookback_days`` days with their versions (ETag, generation or
  mtime+size: :func:`pynomaly_core.data.sources.partition_files`). A day with a new or changed
  file gets one ``<feed>__daily`` run per partition of the day (ingest, validate, score,
  explain, monitor, export); the run key is the partition plus a digest of the day's file
  versions, so each version of a day's files is processed once however often the sensor ticks,
  and a rewritten file runs it again. It starts running when ``schedules.trigger`` is ``arrival``; cron feeds keep
  their daily schedule (``schedules.daily_cron``).
* ``freshness: {expected_by: "06:00"}`` — a freshness check on ``raw``
  (:func:`dagster.build_time_partition_freshness_checks`): the day that ended must be ingested by
  that time (UTC) the next day, or the check fails (severity WARN) and the UI shows the feed late.
  ``<feed>__freshness_sensor`` evaluates it after each deadline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import dagster as dg

from pynomaly_assets.defs.jobs import job_names
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.names import TRIGGER_TAG
from pynomaly_core.data.config import CsvSource, ParquetSource
from pynomaly_core.data.sources import partition_files

#: on arrival runs: the new or changed files that started the run (shortened)
ARRIVED_TAG = "pynomaly/arrived_files"
_TAG_LIMIT = 1000


def watches_files(fc: FeedContext) -> bool:
    return isinstance(fc.feed.source, (CsvSource, ParquetSource))


def recent_days(fc: FeedContext, now: dt.datetime) -> dict[str, list[str]]:
    """``{day: its partition keys}`` of the feed's last ``arrival_lookback_days`` days with a
    partition at ``now``, oldest first (one key per day; 24 for an hourly feed)."""
    days: dict[str, list[str]] = {}
    for key in fc.partitions_def.get_partition_keys(current_time=now):
        days.setdefault(str(key)[:10], []).append(key)
    recent = sorted(days)[-fc.feed.schedules.arrival_lookback_days :]
    return {day: days[day] for day in recent}


def version_digest(versions: dict[str, str]) -> str:
    """A short digest of a partition's ``{path: version}``: the run key of that state."""
    text = json.dumps(sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_arrival_sensor(fc: FeedContext, jobs: list) -> dg.SensorDefinition | None:
    """``<feed>__arrival_sensor`` for feeds with a file source; None for SQL and demo feeds."""
    if not watches_files(fc):
        return None
    settings = fc.feed.schedules
    daily = {j.name: j for j in jobs}[job_names(fc.name)["daily"]]

    @dg.sensor(
        name=f"{fc.name}__arrival_sensor",
        job=daily,
        minimum_interval_seconds=settings.arrival_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING
        if settings.trigger == "arrival"
        else dg.DefaultSensorStatus.STOPPED,
        description=f"Runs {daily.name} for a day of `{fc.name}` when its files land or change "
        f"(the last {settings.arrival_lookback_days} days, once per file version).",
    )
    def arrival_sensor(context: dg.SensorEvaluationContext):
        seen: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
        days = recent_days(fc, dt.datetime.now(dt.UTC))
        requests: list[dg.RunRequest] = []
        state: dict[str, dict[str, str]] = {}
        for day, keys in days.items():
            files = partition_files(fc.feed, dt.date.fromisoformat(day))
            versions = {f.path: f.version for f in files}
            state[day] = versions
            before = seen.get(day, {})
            changed = sorted(p for p, v in versions.items() if before.get(p) != v)
            if not changed:  # nothing new (files only removed: nothing to ingest)
                continue
            digest = version_digest(versions)
            requests.extend(
                dg.RunRequest(
                    partition_key=key,
                    run_key=f"arrival-{key}-{digest}",
                    tags={TRIGGER_TAG: "arrival", ARRIVED_TAG: ", ".join(changed)[:_TAG_LIMIT]},
                )
                for key in keys
            )
        context.update_cursor(json.dumps(state, sort_keys=True))
        if not requests:
            listed = f"{min(days)}..{max(days)}" if days else "no day yet"
            return dg.SkipReason(f"no new or changed files ({listed})")
        return dg.SensorResult(run_requests=requests)

    return arrival_sensor


def build_freshness(fc: FeedContext) -> tuple[list, list[dg.SensorDefinition]]:
    """The freshness check on ``raw`` and its sensor when ``freshness.expected_by`` is set."""
    cron = fc.feed.freshness.deadline_cron()
    if cron is None:
        return [], []
    checks = dg.build_time_partition_freshness_checks(
        assets=[fc.key("raw")], deadline_cron=cron, timezone="UTC"
    )
    sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name=f"{fc.name}__freshness_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    return list(checks), [sensor]
