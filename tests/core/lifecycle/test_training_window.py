"""Training windows as days (pynomaly_core.lifecycle.window): the retrain window and the no-hindsight rule."""

import datetime as dt

import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.lifecycle import (
    ChampionRecord,
    format_days,
    frame_days,
    parse_days,
    rescoring_verdict,
    retrain_days,
    retrain_window,
    training_window,
)

BASE = {
    "name": "cpu",
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "features": [{"name": "value", "type": "float"}],
    "partitioning": {"start_date": "2026-11-01"},
    "training": {"window_days": 7},
}


def feed(training: dict | None = None, monitoring: dict | None = None):
    return parse_feed(
        {
            **BASE,
            "training": {**BASE["training"], **(training or {})},
            "monitoring": monitoring or {},
        }
    )


def days(first: str, last: str) -> tuple[str, ...]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return tuple((start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1))


def test_days_format_as_runs_and_parse_back():
    wanted = (*days("2026-11-01", "2026-11-07"), "2026-11-10", *days("2026-11-30", "2026-12-02"))
    text = format_days(wanted)
    assert text == "2026-11-01..2026-11-07,2026-11-10,2026-11-30..2026-12-02"
    assert parse_days(text) == wanted
    assert parse_days(None) == parse_days("") == () and format_days([]) == ""
    # an hourly partition key counts as its day
    assert format_days(["2026-11-01-05:00", "2026-11-01-06:00"]) == "2026-11-01"
    with pytest.raises(ValueError):
        parse_days("2026-13-01")


def test_frame_days_are_the_utc_days_of_the_rows():
    frame = pd.DataFrame(
        {"ts": ["2026-11-01T23:30:00+00:00", "2026-11-02T00:30:00+01:00", "2026-11-03T10:00:00Z"]}
    )
    assert frame_days(frame, "ts") == (
        "2026-11-01",
        "2026-11-03",
    )  # 00:30+01:00 is 23:30 UTC on the 1st


def test_a_plain_training_window_is_the_last_calendar_days():
    plan = training_window(dt.date(2026, 11, 7), 7)
    assert plan.days == days("2026-11-01", "2026-11-07") and plan.reference == ()
    assert plan.describe() == "2026-11-01..2026-11-07"


def test_a_retrain_keeps_the_champion_reference_days_and_adds_the_recent_ones():
    """Default: training.window_days of each, so the old normal and the change are both learned."""
    champion = days("2026-11-01", "2026-11-07")
    plan = retrain_window(feed(), dt.date(2026, 11, 30), champion)
    assert plan.reference == champion and plan.recent == days("2026-11-24", "2026-11-30")
    assert plan.days == (*champion, *plan.recent) and plan.end == "2026-11-30"
    assert plan.describe() == "reference 2026-11-01..2026-11-07 + recent 2026-11-24..2026-11-30"
    # overlapping reference and recent days are read once
    assert retrain_window(feed(), dt.date(2026, 11, 10), champion).days == days(
        "2026-11-01", "2026-11-10"
    )


def test_the_retrain_window_settings():
    champion = days("2026-11-01", "2026-11-07")
    short = retrain_window(
        feed({"retrain_window": {"reference_days": 3, "recent_days": 2}}),
        dt.date(2026, 11, 20),
        champion,
    )
    assert short.days == (*days("2026-11-05", "2026-11-07"), "2026-11-19", "2026-11-20")
    # reference_days 0: the recent days only (the behaviour before the setting)
    only_recent = retrain_window(
        feed({"retrain_window": {"reference_days": 0}}), dt.date(2026, 11, 20), champion
    )
    assert only_recent.days == days("2026-11-14", "2026-11-20") and only_recent.reference == ()
    # monitoring.retrain_window_days is the older name of recent_days; recent_days and run config win
    assert retrain_days(feed(monitoring={"retrain_window_days": 3})) == (7, 3)
    assert retrain_days(
        feed({"retrain_window": {"recent_days": 4}}, {"retrain_window_days": 3})
    ) == (7, 4)
    assert retrain_days(feed(), recent_override=2) == (7, 2)
    # no champion yet: the recent days only; champion days after the end are left out
    assert retrain_window(feed(), dt.date(2026, 11, 7), ()).days == champion
    assert (
        retrain_window(feed(), dt.date(2026, 11, 5), days("2026-11-01", "2026-11-09")).end
        == "2026-11-05"
    )


def test_a_retrain_window_setting_error_names_the_key():
    with pytest.raises(Exception, match="training.retrain_window.recent_days"):
        feed({"retrain_window": {"recent_days": 0}})


# ------------------------------------------------------------------ no hindsight
CHAMPION = ChampionRecord(
    feed="cpu",
    version="5",
    path="/m",
    detector="IForest",
    training_days=days("2026-11-01", "2026-11-14"),
)


def test_a_day_scored_by_another_version_inside_or_before_the_window_keeps_its_first_scores():
    for partition, where in (("2026-11-13", "inside"), ("2026-10-30", "before")):
        verdict = rescoring_verdict(
            CHAMPION,
            partition,
            "3",
            config_hint="run config allow_hindsight: true on cpu/anomaly_scores",
        )
        assert not verdict.allowed and verdict.previous_version == "3"
        assert verdict.reason == (
            f"champion version 5 of feed 'cpu' was trained on 2026-11-01..2026-11-14, and partition {partition} "
            f"lies {where} that window: it was scored by version 3 and keeps those first scores, because rescoring "
            "it with a model that has seen this day or later ones would rewrite history with hindsight. To rescore "
            "it anyway, set run config allow_hindsight: true on cpu/anomaly_scores (the metadata then records both "
            "versions)."
        )


def test_hindsight_on_request_is_allowed_and_says_so():
    verdict = rescoring_verdict(CHAMPION, "2026-11-13", "3", allow_hindsight=True)
    assert verdict.allowed and verdict.hindsight and verdict.previous_version == "3"
    assert "rescored with hindsight on request" in verdict.reason


def test_first_scoring_rerun_by_the_same_version_and_days_after_the_window_are_scored():
    assert rescoring_verdict(CHAMPION, "2026-11-13", None).allowed  # never scored: first scores
    assert rescoring_verdict(CHAMPION, "2026-11-13", "5").allowed  # the same model again
    after = rescoring_verdict(CHAMPION, "2026-11-15", "3")
    assert after.allowed and not after.hindsight and after.previous_version == "3"
    assert after.reason == (
        "partition 2026-11-15: rescored by version 5 (previously version 3), trained on "
        "2026-11-01..2026-11-14, before this day"
    )
    # an hourly partition is judged by its day
    assert not rescoring_verdict(CHAMPION, "2026-11-14-23:00", "3").allowed
    assert rescoring_verdict(CHAMPION, "2026-11-15-00:00", "3").allowed


def test_a_champion_without_a_recorded_window_cannot_be_judged_and_scores():
    legacy = ChampionRecord(feed="cpu", version="5", path="/m")
    verdict = rescoring_verdict(legacy, "2026-11-13", "3")
    assert verdict.allowed and "records no training window" in verdict.reason
