"""The retraining decision of pynomaly_core.retrain on plain data: one test per rule of the sensor."""

import json

from pynomaly_core.data.config import MonitoringSettings
from pynomaly_core.retrain import (
    HANDLED_KEEP,
    REASON_MAX_CHARS,
    CheckFailure,
    MonitoredCheck,
    RetrainCursor,
    RetrainRun,
    RunState,
    format_partitions,
    parse_partitions,
    plan,
    rescore_after,
    watched,
)

PERF = MonitoredCheck(
    "drifty/detector_performance:performance_not_degraded", "performance_not_degraded"
)
DRIFT = MonitoredCheck("drifty/drift_report:drift_within_bounds", "drift_within_bounds", drift=True)
CHECKS = [PERF, DRIFT]
NOW = 1_800_000_000.0
HOUR = 3600.0


def failure(
    evaluation_id: int,
    *,
    check: MonitoredCheck = PERF,
    severity: str = "error",
    day: str = "2026-11-06",
    version: str | None = "2",
    description: str = "average precision fell",
) -> CheckFailure:
    return CheckFailure(
        check=check,
        evaluation_id=evaluation_id,
        evaluated_at=NOW - 60,
        severity=severity,
        partition=day,
        model_version=version,
        description=description,
    )


def run(
    run_id: str,
    state: RunState,
    *,
    hours_ago: float = 24.0,
    days: tuple[str, ...] = (),
    promoted: str | None = None,
    window_last: str | None = None,
) -> RetrainRun:
    return RetrainRun(
        run_id=run_id,
        state=state,
        created=NOW - hours_ago * HOUR,
        affected_partitions=days,
        promoted_version=promoted,
        window_last=window_last,
    )


def decide(
    failures=(),
    runs=(),
    *,
    cursor: RetrainCursor | None = None,
    champion: str | None = "2",
    scored: dict | None = None,
    **settings,
):
    return plan(
        failures,
        list(runs),
        NOW,
        MonitoringSettings(**settings),
        feed="drifty",
        sensor="drifty__retrain_sensor",
        checks=CHECKS,
        champion_version=champion,
        cursor=cursor or RetrainCursor(),
        scored=scored,
    )


def test_failures_ask_for_one_retrain_with_reason_and_days():
    decided = decide([failure(5), failure(7, day="2026-11-07", description="canary recall fell")])
    retrain = decided.retrain
    assert retrain is not None and decided.skip_reason is None and decided.rescores == ()
    assert retrain.run_key == "drifty-retrain-7"
    assert retrain.partitions == ("2026-11-06", "2026-11-07")
    assert retrain.reason == (
        "sensor drifty__retrain_sensor: 2 failed check(s) of champion 2 on 2026-11-06, 2026-11-07 -- "
        "performance_not_degraded error: average precision fell | "
        "performance_not_degraded error: canary recall fell"
    )
    assert decided.cursor.seen == {PERF.key: 7}


def test_run_key_is_stable_and_names_the_newest_counted_evaluation():
    failures = [failure(5), failure(9, version="1"), failure(7, check=DRIFT)]
    first, again = decide(failures), decide(list(reversed(failures)))
    # evaluation 9 is a former champion's: it moves the cursor but does not name the retrain
    assert first.retrain.run_key == again.retrain.run_key == "drifty-retrain-7"
    assert first.cursor == again.cursor
    assert first.cursor.seen == {PERF.key: 9, DRIFT.key: 7}


def test_severity_filter_follows_retrain_on():
    warning = [failure(4, severity="warn")]
    ignored = decide(warning)
    assert ignored.retrain is None
    assert ignored.skip_reason == (
        "no new failed performance_not_degraded, drift_within_bounds evaluation for champion 2"
    )
    assert ignored.cursor.seen == {PERF.key: 4}  # a warning will not count later either
    assert decide(warning, retrain_on="warn").retrain.run_key == "drifty-retrain-4"


def test_failures_of_a_former_champion_are_ignored():
    stale = decide([failure(3, version="1")])
    assert stale.retrain is None and stale.cursor.seen == {PERF.key: 3}
    # a failure without a model version, or before any champion, still counts
    assert decide([failure(3, version=None)]).retrain is not None
    assert decide([failure(3, version="1")], champion=None).retrain is not None


def test_drift_failures_count_only_with_retrain_on_drift():
    drift = [failure(6, check=DRIFT)]
    assert decide(drift).retrain.run_key == "drifty-retrain-6"
    assert watched(CHECKS, MonitoringSettings(retrain_on_drift=False)) == [PERF]
    off = decide(drift, retrain_on_drift=False)
    assert off.retrain is None
    assert off.cursor.seen == {}  # the drift check is not watched: its cursor stays as it was
    assert off.skip_reason == "no new failed performance_not_degraded evaluation for champion 2"


def test_a_queued_or_running_retrain_keeps_failures_pending():
    cursor = RetrainCursor(seen={PERF.key: 2})
    for state in (RunState.QUEUED, RunState.RUNNING):
        waiting = decide(
            [failure(5)],
            [run("0123456789abcdef", state, hours_ago=30)],
            cursor=cursor,
            cooldown_hours=0,
        )
        assert waiting.retrain is None
        assert (
            waiting.skip_reason
            == f"1 failed check(s) pending: retrain run 01234567 is {state.value}"
        )
        assert waiting.cursor.seen == {PERF.key: 2}  # the failure is acted on once the run ends


def test_cooldown_keeps_failures_pending_until_it_ends():
    cursor = RetrainCursor(seen={PERF.key: 2}, handled=("old",))
    # the cooldown counts from the newest retrain run, whatever its outcome
    recent = [
        run("failed", RunState.STOPPED, hours_ago=2),
        run("old", RunState.SUCCEEDED, hours_ago=20),
    ]
    waiting = decide([failure(5)], recent, cursor=cursor)
    assert waiting.retrain is None
    assert (
        waiting.skip_reason
        == "1 failed check(s) pending: last retrain 2.0 h ago, monitoring.cooldown_hours=12.0"
    )
    assert waiting.cursor.seen == {PERF.key: 2}
    later = [
        run("failed", RunState.STOPPED, hours_ago=13),
        run("old", RunState.SUCCEEDED, hours_ago=31),
    ]
    fired = decide([failure(5)], later, cursor=waiting.cursor)
    assert fired.retrain.run_key == "drifty-retrain-5" and fired.cursor.seen == {PERF.key: 5}


def test_rescoring_once_per_promoted_retrain_without_a_recorded_window():
    """A champion that records no training window (stored before windows were recorded): the
    affected days are rescored, as before."""
    days = ("2026-11-06", "2026-11-07")
    runs = [
        run("running", RunState.RUNNING, hours_ago=1, days=("2026-11-08",)),
        run("promoted", RunState.SUCCEEDED, hours_ago=5, days=days, promoted="3"),
        run("keptkeptkept", RunState.SUCCEEDED, hours_ago=30, days=("2026-11-01",)),
    ]
    first = decide([], runs, champion="3")
    assert [(r.partition, r.run_key, r.retrain_run_id) for r in first.rescores] == [
        ("2026-11-06", "rescore-promoted-2026-11-06", "promoted"),
        ("2026-11-07", "rescore-promoted-2026-11-07", "promoted"),
    ]
    assert first.rescores[0].reason == "rescore with champion version 3 after retrain run promoted"
    assert first.skip_reason is None
    assert first.cursor.handled == (
        "keptkeptkept",
        "promoted",
    )  # oldest first; the running one waits
    second = decide([], runs, champion="3", cursor=first.cursor)
    assert second.rescores == () and second.cursor == first.cursor
    assert second.skip_reason.startswith("no new failed")
    kept = decide([], runs[2:])
    assert (
        kept.rescores == ()
        and kept.skip_reason == "retrain run keptkept kept the champion; nothing to rescore"
    )


def test_days_inside_the_new_window_keep_their_first_scores():
    """The retrain window ends at the latest validated day: its affected days lie inside it and are
    not rescored (no hindsight); the skip says so."""
    runs = [
        run(
            "promoted",
            RunState.SUCCEEDED,
            days=("2026-11-06", "2026-11-07"),
            promoted="3",
            window_last="2026-11-07",
        )
    ]
    decided = decide([], runs, champion="3", scored={"2026-11-07": "2"})
    assert decided.rescores == () and decided.retrain is None
    assert decided.skip_reason == (
        "retrain run promoted promoted version 3 trained up to 2026-11-07: the affected days "
        "2026-11-06..2026-11-07 lie in or before its window and keep their first scores (no hindsight); "
        "no day after its window was scored by another version"
    )
    assert decided.cursor.handled == ("promoted",)


def test_days_after_the_new_window_scored_by_another_version_are_rescored():
    """A day the former champion scored after the window (while the retrain ran) is rescored once; a
    day the new champion scored already is not, nor is an affected day inside the window."""
    runs = [
        run(
            "promoted",
            RunState.SUCCEEDED,
            days=("2026-11-07", "2026-11-08"),
            promoted="3",
            window_last="2026-11-07",
        )
    ]
    scored = {"2026-11-08": "2", "2026-11-09": "2", "2026-11-10": "3"}
    decided = decide([], runs, champion="3", scored=scored)
    assert [(r.partition, r.run_key) for r in decided.rescores] == [
        ("2026-11-08", "rescore-promoted-2026-11-08"),
        ("2026-11-09", "rescore-promoted-2026-11-09"),
    ]
    assert decided.rescores[0].reason == (
        "rescore with champion version 3 after retrain run promoted "
        "(days after its training window, which ends 2026-11-07)"
    )
    again = decide([], runs, champion="3", scored=scored, cursor=decided.cursor)
    assert again.rescores == ()


def test_only_the_newest_promotion_of_the_current_champion_rescores():
    older = run(
        "older-run", RunState.SUCCEEDED, hours_ago=30, promoted="3", window_last="2026-11-05"
    )
    newer = run(
        "newer-run", RunState.SUCCEEDED, hours_ago=5, promoted="4", window_last="2026-11-07"
    )
    scored = {"2026-11-06": "2", "2026-11-08": "3"}
    decided = decide([], [newer, older], champion="4", scored=scored)
    assert [r.partition for r in decided.rescores] == [
        "2026-11-08"
    ]  # 11-06 is inside version 4's window
    assert {r.retrain_run_id for r in decided.rescores} == {"newer-run"}
    assert decided.cursor.handled == ("older-run", "newer-run")
    # a champion promoted by hand since: the retrain's version no longer scores, nothing to rescore
    replaced = decide([], [newer], champion="5", scored=scored)
    assert replaced.rescores == ()
    assert "promoted version 4, since replaced by version 5" in replaced.skip_reason


def test_rescore_after_is_the_earliest_window_end_of_unhandled_promotions():
    runs = [
        run("a", RunState.SUCCEEDED, promoted="4", window_last="2026-11-09"),
        run("b", RunState.SUCCEEDED, promoted="3", window_last="2026-11-07"),
        run("c", RunState.SUCCEEDED),
        run("d", RunState.RUNNING),
    ]
    assert rescore_after(runs, RetrainCursor()) == "2026-11-07"
    assert rescore_after(runs, RetrainCursor(handled=("b",))) == "2026-11-09"
    assert rescore_after(runs, RetrainCursor(handled=("a", "b"))) is None


def test_the_cursor_remembers_the_last_handled_runs_only():
    cursor = RetrainCursor(handled=tuple(f"run-{i}" for i in range(HANDLED_KEEP)))
    decided = decide(
        [], [run("new", RunState.SUCCEEDED, days=("2026-11-06",), promoted="3")], cursor=cursor
    )
    assert len(decided.cursor.handled) == HANDLED_KEEP
    assert decided.cursor.handled[-1] == "new" and "run-0" not in decided.cursor.handled


def test_the_cursor_moves_past_new_failures_and_survives_json():
    cursor = RetrainCursor(seen={PERF.key: 7, DRIFT.key: 3})
    # evaluations the cursor has seen are not failures again
    assert decide([failure(7), failure(3, check=DRIFT)], cursor=cursor).retrain is None
    decided = decide([failure(7), failure(8, check=DRIFT)], cursor=cursor)
    assert decided.retrain.run_key == "drifty-retrain-8"
    assert decided.cursor.seen == {PERF.key: 7, DRIFT.key: 8}
    text = decided.cursor.to_json()
    assert json.loads(text) == {"seen": {PERF.key: 7, DRIFT.key: 8}, "handled_retrains": []}
    assert RetrainCursor.from_json(text) == decided.cursor
    assert RetrainCursor.from_json(None) == RetrainCursor.from_json("") == RetrainCursor()


def test_the_reason_is_truncated_for_run_tags():
    decided = decide([failure(1, description="x" * 2 * REASON_MAX_CHARS)])
    assert len(decided.retrain.reason) == REASON_MAX_CHARS


def test_affected_partitions_round_trip_through_a_tag_value():
    days = ("2026-11-06", "2026-11-07")
    assert format_partitions(days) == "2026-11-06,2026-11-07"
    assert parse_partitions(format_partitions(days)) == days
    assert parse_partitions(None) == parse_partitions("") == ()
