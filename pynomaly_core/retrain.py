"""The retraining decision: which failed checks retrain a feed, and which days to rescore after.

The retraining sensor (``pynomaly_assets/defs/sensors.py``) reads the instance — failed
evaluations of the monitoring checks, the feed's retrain runs, the current champion — and hands
them to :func:`plan`, which decides on plain data; the sensor turns the decision into run
requests. The policy lives here, once, so that it can be tested without a Dagster instance
(``tests/core/test_retrain.py``); ``docs/monitoring.md`` tells it to operators:

1. **Rescore, without hindsight.** The newest successful retrain run not handled yet that
   promoted the current champion asks for the days *after* that champion's training window
   that another version scored (its affected days there, and days scored meanwhile by the
   former champion) to be scored again, with run key ``rescore-<run id>-<day>`` (once each).
   Days inside or before the window keep their first scores: the new model has seen them, or
   later days, and rescoring them would judge the past with hindsight (``anomaly_scores``
   refuses it unless its run config sets ``allow_hindsight``). A retrain window ends at the
   latest validated day, so usually nothing is rescored and the days after it are scored by
   the new champion as they arrive. Older unhandled runs, runs that kept the old champion,
   and runs whose champion was since replaced are noted and handled too. The cursor
   remembers the last :data:`HANDLED_KEEP` handled runs.
2. **Retrain.** Failed evaluations recorded after the cursor count when their severity is at
   least ``monitoring.retrain_on``, when they judge drift only with
   ``monitoring.retrain_on_drift``, and only when the partition was scored by the *current*
   champion: a former champion's failures were answered by the retrain that replaced it, and
   the new champion is judged on the days it scores. The counted failures ask for one retrain whose run key is
   ``<feed>-retrain-<newest counted evaluation id>``, so one failure triggers exactly one
   retrain. While a retrain is queued or running, or within ``monitoring.cooldown_hours`` of
   the last one, they stay pending: the cursor does not move past them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pynomaly_core.data.settings import MonitoringSettings
from pynomaly_core.lifecycle.window import day_of, format_days

#: how many handled retrain runs the cursor remembers; the sensor reads fewer successful runs
#: a tick, so a run once handled is never rescored again
HANDLED_KEEP = 50
#: longest retrain reason kept: it travels as a run tag and an MLflow tag, which are for
#: reading, not for storing every description of a long outage
REASON_MAX_CHARS = 4000

Severity = Literal["warn", "error"]
#: the failure severities that retrain, by ``monitoring.retrain_on``
_RETRAINING: dict[str, frozenset[str]] = {
    "error": frozenset({"error"}),
    "warn": frozenset({"warn", "error"}),
}


class RunState(enum.Enum):
    """Where a retrain run is, as far as the policy cares (the sensor maps the orchestrator's statuses)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    #: failed, canceled or being canceled: neither in flight nor a source of a new champion
    STOPPED = "stopped"

    @property
    def in_flight(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


@dataclass(frozen=True)
class MonitoredCheck:
    """A check whose failures can retrain the feed."""

    #: the check as the cursor records it (``<asset key>:<check name>``)
    key: str
    #: the check's name, as the retrain reason and skip messages show it
    name: str
    #: it judges feature drift, so ``monitoring.retrain_on_drift`` decides whether it counts
    drift: bool = False


@dataclass(frozen=True)
class CheckFailure:
    """One failed evaluation of a monitored check."""

    check: MonitoredCheck
    #: the evaluation's storage id: increases with time, and names the retrain it triggers
    evaluation_id: int
    #: when it was recorded, seconds since the epoch
    evaluated_at: float
    severity: Severity
    #: the partition (day) the evaluation judged
    partition: str | None
    #: the model version that scored that partition
    model_version: str | None
    description: str | None = None


@dataclass(frozen=True)
class RetrainRun:
    """One run of the feed's retrain job."""

    run_id: str
    state: RunState
    #: when it was created (queued), seconds since the epoch: the cooldown counts from here
    created: float
    #: the partitions whose failures it was started for, rescored once it promotes a champion
    affected_partitions: tuple[str, ...] = ()
    #: the champion version it promoted; None while running, or when it kept the old champion
    promoted_version: str | None = None
    #: the last day of that champion's training window; None when it records none (then the
    #: affected partitions are rescored, as before the window was recorded)
    window_last: str | None = None


@dataclass(frozen=True)
class RetrainCursor:
    """What the sensor has acted on: the newest evaluation id seen per check, the retrain runs handled."""

    seen: Mapping[str, int] = field(default_factory=dict)
    handled: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, text: str | None) -> RetrainCursor:
        """The cursor the sensor stored (``None`` or empty on its first tick)."""
        data = json.loads(text) if text else {}
        return cls(
            seen={str(k): int(v) for k, v in data.get("seen", {}).items()},
            handled=tuple(data.get("handled_retrains", [])),
        )

    def to_json(self) -> str:
        return json.dumps(
            {"seen": dict(self.seen), "handled_retrains": list(self.handled)}, sort_keys=True
        )


@dataclass(frozen=True)
class Rescore:
    """Score ``partition`` again with the champion a retrain run promoted."""

    partition: str
    run_key: str
    retrain_run_id: str
    reason: str


@dataclass(frozen=True)
class Retrain:
    """Retrain the feed for ``partitions``' failures (its window is ``training.retrain_window``,
    resolved by the ``training_window`` asset of the retrain run)."""

    run_key: str
    reason: str
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class RetrainPlan:
    """What one sensor tick does."""

    rescores: tuple[Rescore, ...]
    retrain: Retrain | None
    cursor: RetrainCursor
    #: why the tick requests nothing; None when it requests a run
    skip_reason: str | None


def format_partitions(partitions: Iterable[str]) -> str:
    """The affected partitions as one run-tag value (the tag :func:`parse_partitions` reads back)."""
    return ",".join(partitions)


def parse_partitions(value: str | None) -> tuple[str, ...]:
    """The partitions of a run-tag value written by :func:`format_partitions` (empty for a missing tag)."""
    return tuple(p for p in (value or "").split(",") if p)


def watched(checks: Iterable[MonitoredCheck], settings: MonitoringSettings) -> list[MonitoredCheck]:
    """The checks whose failures retrain: drift checks only with ``monitoring.retrain_on_drift``."""
    return [c for c in checks if settings.retrain_on_drift or not c.drift]


def plan(
    failures: Iterable[CheckFailure],
    runs: Sequence[RetrainRun],
    now: float,
    settings: MonitoringSettings,
    *,
    feed: str,
    sensor: str,
    checks: Sequence[MonitoredCheck],
    champion_version: str | None,
    cursor: RetrainCursor,
    scored: Mapping[str, str | None] | None = None,
) -> RetrainPlan:
    """Decide one tick of the retraining sensor of ``feed``.

    ``failures`` are the failed evaluations of ``checks`` (any order; those the cursor has seen
    are ignored), ``runs`` the feed's recent retrain runs, newest first, ``now`` the time in
    seconds since the epoch and ``sensor`` the name the retrain reason gives as its source.
    ``scored`` maps the scored partitions after the training window of the champions that
    unhandled runs promoted (:func:`rescore_after`) to the model version whose scores they hold.
    """
    handled = list(cursor.handled)
    rescores, notes = _rescores(runs, handled, champion_version, scored or {})
    active = watched(checks, settings)
    counted, newest = _new_failures(failures, active, settings, champion_version, cursor.seen)
    seen: Mapping[str, int] = newest
    retrain = None
    if counted:
        waiting = _waiting(runs, now, settings)
        if waiting:
            notes.append(f"{len(counted)} failed check(s) pending: {waiting}")
            seen = cursor.seen
        else:
            retrain = _retrain(counted, feed, sensor, champion_version)
    new_cursor = RetrainCursor(seen=seen, handled=tuple(handled[-HANDLED_KEEP:]))
    if rescores or retrain:
        skip = None
    elif notes:
        skip = "; ".join(notes)
    else:
        skip = f"no new failed {', '.join(c.name for c in active)} evaluation for champion {champion_version}"
    return RetrainPlan(
        rescores=tuple(rescores), retrain=retrain, cursor=new_cursor, skip_reason=skip
    )


def rescore_after(runs: Sequence[RetrainRun], cursor: RetrainCursor) -> str | None:
    """The earliest last training day among the champions that successful, unhandled runs promoted:
    the sensor reads which model version scored each partition after it (``plan``'s ``scored``).
    None when no such run records its window."""
    days = [
        r.window_last
        for r in runs
        if r.state is RunState.SUCCEEDED
        and r.run_id not in cursor.handled
        and r.promoted_version is not None
        and r.window_last is not None
    ]
    return min(days) if days else None


def _rescores(
    runs: Sequence[RetrainRun],
    handled: list[str],
    champion_version: str | None,
    scored: Mapping[str, str | None],
) -> tuple[list[Rescore], list[str]]:
    """Rescoring after the newest successful retrain run not in ``handled`` that promoted the current
    champion; every unhandled successful run is marked handled (oldest first)."""
    notes: list[str] = []
    pending = [
        r for r in reversed(runs) if r.state is RunState.SUCCEEDED and r.run_id not in handled
    ]
    handled.extend(r.run_id for r in pending)
    promoted = [r for r in pending if r.promoted_version is not None]
    notes += [
        f"retrain run {r.run_id[:8]} kept the champion; nothing to rescore"
        for r in pending
        if r.promoted_version is None
    ]
    if not promoted:
        return [], notes
    run = promoted[-1]
    notes += [
        f"retrain run {r.run_id[:8]}'s champion was replaced by a later one; nothing to rescore for it"
        for r in promoted[:-1]
    ]
    version = run.promoted_version
    if champion_version is not None and version != champion_version:
        notes.append(
            f"retrain run {run.run_id[:8]} promoted version {version}, since replaced by version "
            f"{champion_version}; nothing to rescore"
        )
        return [], notes
    days, kept = _days_to_rescore(run, scored)
    if not days:
        notes.append(
            f"retrain run {run.run_id[:8]} promoted version {version} trained up to {run.window_last}: "
            + (
                f"the affected days {format_days(kept)} lie in or before its window and keep their first "
                "scores (no hindsight); "
                if kept
                else ""
            )
            + "no day after its window was scored by another version"
        )
        return [], notes
    reason = f"rescore with champion version {version} after retrain run {run.run_id[:8]}" + (
        f" (days after its training window, which ends {run.window_last})"
        if run.window_last
        else ""
    )
    return [
        Rescore(
            partition=day,
            run_key=f"rescore-{run.run_id}-{day}",
            retrain_run_id=run.run_id,
            reason=reason,
        )
        for day in days
    ], notes


def _days_to_rescore(
    run: RetrainRun, scored: Mapping[str, str | None]
) -> tuple[list[str], list[str]]:
    """(partitions to rescore, affected partitions kept as first scored) for a promoting run."""
    last = run.window_last
    if last is None:  # the champion records no window: rescore what the run was started for
        return list(run.affected_partitions), []
    after = {p for p in run.affected_partitions if day_of(p) > last}
    after |= {
        p
        for p, v in scored.items()
        if day_of(p) > last and v is not None and v != run.promoted_version
    }
    after -= {p for p, v in scored.items() if v == run.promoted_version}
    kept = sorted(p for p in run.affected_partitions if day_of(p) <= last)
    return sorted(after), kept


def _new_failures(
    failures: Iterable[CheckFailure],
    active: Sequence[MonitoredCheck],
    settings: MonitoringSettings,
    champion_version: str | None,
    seen: Mapping[str, int],
) -> tuple[list[CheckFailure], dict[str, int]]:
    """The failures that retrain, and the newest evaluation id per check once all new ones are acted on.

    Every new failure of an active check moves the cursor, counted or not: a warning under
    ``retrain_on: error`` or a former champion's failure will not count later either.
    """
    severities = _RETRAINING[settings.retrain_on]
    counted: list[CheckFailure] = []
    newest = dict(seen)
    for failure in failures:
        key = failure.check.key
        if failure.check not in active or failure.evaluation_id <= seen.get(key, 0):
            continue
        newest[key] = max(newest.get(key, 0), failure.evaluation_id)
        if failure.severity not in severities:
            continue
        if champion_version is not None and failure.model_version not in (None, champion_version):
            continue  # scored by a former champion: the retrain that replaced it answered it
        counted.append(failure)
    return counted, newest


def _waiting(runs: Sequence[RetrainRun], now: float, settings: MonitoringSettings) -> str | None:
    """Why failures must wait (a retrain in flight, or the cooldown), or None when a retrain may start."""
    in_flight = next((r for r in runs if r.state.in_flight), None)
    if in_flight is not None:
        return f"retrain run {in_flight.run_id[:8]} is {in_flight.state.value}"
    if runs:
        since = now - runs[0].created
        if since < settings.cooldown_hours * 3600:
            return f"last retrain {since / 3600:.1f} h ago, monitoring.cooldown_hours={settings.cooldown_hours}"
    return None


def _retrain(
    counted: Sequence[CheckFailure], feed: str, sensor: str, champion_version: str | None
) -> Retrain:
    """One retrain for all counted failures, keyed by the newest of them."""
    days = sorted({f.partition for f in counted if f.partition})
    newest = max(f.evaluation_id for f in counted)
    details = sorted({f"{f.check.name} {f.severity}: {f.description or ''}" for f in counted})
    reason = (
        f"sensor {sensor}: {len(counted)} failed check(s) of champion {champion_version} on "
        f"{', '.join(days)} -- " + " | ".join(details)
    )
    return Retrain(
        run_key=f"{feed}-retrain-{newest}", reason=reason[:REASON_MAX_CHARS], partitions=tuple(days)
    )
