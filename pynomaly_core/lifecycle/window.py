"""Training windows as days: which days a (re)training is fitted on, and which days a model may rescore.

A champion records the UTC days of its training window (:attr:`ChampionRecord.training_days`).
Two rules read them:

* :func:`retrain_window` — a retrain (``<feed>__retrain``) is fitted on the last
  ``training.retrain_window.reference_days`` days the current champion was trained on (what
  normal looked like) plus the latest ``recent_days`` validated days (what changed). Only the
  latest days would forget the old normal and flag every return to it; only the old days would
  never learn the change.
* :func:`rescoring_verdict` — no hindsight: a day already scored by another model version is
  not scored again by a champion whose training window contains that day or lies after it
  (the model has seen the day, or later days), unless the user asks for it explicitly. The
  day keeps its first scores; days after the champion's window are scored by it as usual.

Days are ``YYYY-MM-DD`` strings (UTC), compared as strings; a partition key longer than a day
(an hourly ``YYYY-MM-DD-HH:MM``) is judged by its day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.lifecycle.record import ChampionRecord

#: separates a run of consecutive days in :func:`format_days`
RANGE = ".."


def day_of(partition: str) -> str:
    """The UTC day (``YYYY-MM-DD``) of a partition key."""
    return str(partition)[:10]


def frame_days(frame: pd.DataFrame, event_time: str) -> tuple[str, ...]:
    """The UTC days that rows of ``frame`` fall on, ascending (what a model trained on ``frame`` saw)."""
    if event_time not in frame.columns or frame.empty:
        return ()
    days = pd.to_datetime(frame[event_time], utc=True).dropna().dt.strftime("%Y-%m-%d")
    return tuple(sorted(days.unique().tolist()))


def format_days(days: Iterable[str]) -> str:
    """Days as runs of consecutive days: ``2026-11-01..2026-11-07,2026-11-10`` (short enough for a tag)."""
    ordered = sorted({day_of(d) for d in days})
    runs: list[list[str]] = []
    for day in ordered:
        if runs and dt.date.fromisoformat(day) - dt.date.fromisoformat(
            runs[-1][-1]
        ) == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(r[0] if len(r) == 1 else f"{r[0]}{RANGE}{r[-1]}" for r in runs)


def parse_days(text: str | None) -> tuple[str, ...]:
    """The days of a :func:`format_days` text (empty for None or ""); a ValueError names a bad day."""
    out: list[str] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition(RANGE)
        start = dt.date.fromisoformat(first)
        end = dt.date.fromisoformat(last) if last else start
        out += [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    return tuple(sorted(set(out)))


def calendar_days(end: dt.date, count: int) -> tuple[str, ...]:
    """The ``count`` calendar days ending at ``end`` (inclusive), ascending."""
    return tuple((end - dt.timedelta(days=i)).isoformat() for i in range(count - 1, -1, -1))


@dataclass(frozen=True)
class WindowPlan:
    """The days a training run wants (it reads those that are materialized)."""

    days: tuple[str, ...]
    #: the days kept from the current champion's training window (a retrain only)
    reference: tuple[str, ...] = ()
    #: the latest calendar days up to the window's end
    recent: tuple[str, ...] = ()

    @property
    def start(self) -> str:
        return self.days[0]

    @property
    def end(self) -> str:
        return self.days[-1]

    def describe(self) -> str:
        """``reference 2026-11-01..2026-11-07 + recent 2026-11-08..2026-11-14`` (or the plain window)."""
        if not self.reference:
            return format_days(self.days)
        return f"reference {format_days(self.reference)} + recent {format_days(self.recent)}"


def training_window(end: dt.date, window_days: int) -> WindowPlan:
    """The plain window of ``<feed>__train``: the last ``window_days`` calendar days up to ``end``."""
    days = calendar_days(end, window_days)
    return WindowPlan(days=days, recent=days)


def retrain_days(feed: FeedConfig, recent_override: int | None = None) -> tuple[int, int]:
    """(reference days, recent days) of a retrain of ``feed``, the defaults resolved.

    ``training.retrain_window.reference_days`` defaults to ``training.window_days``;
    ``recent_days`` to ``monitoring.retrain_window_days`` when set (its older name), else
    ``training.window_days``; ``recent_override`` (the run config's ``window_days``) wins.
    """
    setting = feed.training.retrain_window
    reference = (
        feed.training.window_days if setting.reference_days is None else setting.reference_days
    )
    recent = (
        recent_override
        or setting.recent_days
        or feed.monitoring.retrain_window_days
        or feed.training.window_days
    )
    return reference, recent


def retrain_window(
    feed: FeedConfig,
    end: dt.date,
    champion_days: Sequence[str],
    *,
    recent_override: int | None = None,
) -> WindowPlan:
    """The window of ``<feed>__retrain``: the last reference days of the champion's training window
    (``champion_days``; none before the first champion) plus the recent days ending at ``end``.

    Champion days after ``end`` are left out, so the window's last day — the holdout — is
    always ``end``.
    """
    reference_count, recent_count = retrain_days(feed, recent_override)
    recent = calendar_days(end, recent_count)
    earlier = sorted(d for d in {day_of(x) for x in champion_days} if d < recent[0])
    reference = tuple(earlier[-reference_count:]) if reference_count else ()
    return WindowPlan(days=tuple(sorted({*reference, *recent})), reference=reference, recent=recent)


# ------------------------------------------------------------------ no hindsight
@dataclass(frozen=True)
class RescoringVerdict:
    """May a partition be scored by the champion? ``reason`` says why or why not."""

    allowed: bool
    reason: str
    #: the version that scored the partition before (None: never scored)
    previous_version: str | None
    #: allowed only because the run config asked for hindsight
    hindsight: bool = False


def rescoring_verdict(
    record: ChampionRecord,
    partition: str,
    previous_version: str | None,
    *,
    allow_hindsight: bool = False,
    config_hint: str = "run config allow_hindsight: true on anomaly_scores",
) -> RescoringVerdict:
    """The no-hindsight rule (see the module docstring) for scoring ``partition`` with ``record``.

    ``previous_version`` is the model version whose scores the partition holds now (None when
    it was never scored); ``config_hint`` says, in the refusal, what to set to rescore anyway.
    """
    version = str(record.version)
    day = day_of(partition)
    if previous_version is None or str(previous_version) == version:
        return RescoringVerdict(
            True, f"partition {partition}: scored by version {version}", previous_version
        )
    last = record.window_last
    if last is None:
        return RescoringVerdict(
            True,
            f"partition {partition}: rescored by version {version} (previously version {previous_version}); "
            "the champion records no training window to judge hindsight by",
            previous_version,
        )
    if day > last:
        return RescoringVerdict(
            True,
            f"partition {partition}: rescored by version {version} (previously version {previous_version}), "
            f"trained on {format_days(record.training_days)}, before this day",
            previous_version,
        )
    where = "inside" if day >= (record.window_first or last) else "before"
    seen = (
        f"champion version {version} of feed {record.feed!r} was trained on {format_days(record.training_days)}, "
        f"and partition {partition} lies {where} that window"
    )
    if allow_hindsight:
        return RescoringVerdict(
            True,
            f"{seen}: rescored with hindsight on request (allow_hindsight); previously scored by version "
            f"{previous_version}",
            previous_version,
            hindsight=True,
        )
    return RescoringVerdict(
        False,
        f"{seen}: it was scored by version {previous_version} and keeps those first scores, because rescoring it "
        f"with a model that has seen this day or later ones would rewrite history with hindsight. To rescore it "
        f"anyway, set {config_hint} (the metadata then records both versions).",
        previous_version,
    )
