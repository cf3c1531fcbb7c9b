"""The promotion gate's ROC-AUC floor does not keep a champion that the same rows show is weaker."""

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.lifecycle import EvaluationSet, decide

FEED = parse_feed(
    {
        "name": "cpu",
        "source": {"kind": "csv", "path": "data/{date}.csv"},
        "event_time": "timestamp",
        "record_key": "reading_id",
        "features": [{"name": "value", "type": "float"}],
        "partitioning": {"start_date": "2026-02-01"},
        "lifecycle": {"min_auc": 0.6, "n_boot": 300},
    }
)


def scores(separation: float, n: int = 6000, positives: int = 1200, seed: int = 0):
    """An evaluation set and the scores of a model that separates its anomalies by ``separation``."""
    y = np.r_[np.zeros(n - positives, int), np.ones(positives, int)]
    rng = np.random.default_rng(seed)
    return EvaluationSet(pd.DataFrame({"x": np.zeros(n)}), y, "synthetic", n), y * separation + (
        rng.normal(size=n)
    )


def test_a_weak_challenger_that_beats_a_weaker_champion_is_promoted_saying_both_are_weak():
    evalset, challenger = scores(0.3)  # ROC-AUC ~0.58, below the floor
    champion = np.random.default_rng(1).normal(size=len(evalset.y))  # ~0.5: no better than chance
    d = decide(FEED, evalset, "IForest", challenger, champion)
    assert d.comparison["ci_low"] > 0
    assert d.promote and d.gate_passed, d.gate_reason
    assert "below lifecycle.min_auc = 0.6, but the champion's is lower" in d.gate_reason


def test_a_weak_challenger_not_better_with_confidence_is_still_blocked_when_forced():
    evalset, challenger = scores(0.3)
    champion = challenger + np.random.default_rng(2).normal(scale=0.05, size=len(challenger))
    d = decide(FEED, evalset, "IForest", challenger, champion, forced=True)
    assert not d.promote and not d.gate_passed
    assert "below lifecycle.min_auc = 0.6" in d.gate_reason and "but" not in d.gate_reason


def test_a_weak_challenger_against_a_champion_above_the_floor_is_blocked():
    evalset, good = scores(2.5)
    _, weak = scores(0.25, seed=3)
    d = decide(FEED, evalset, "IForest", weak, good, forced=True)
    assert not d.promote and not d.gate_passed
    assert d.gate_reason.startswith("ROC-AUC ") and "below lifecycle.min_auc" in d.gate_reason


# ------------------------------------------------ indistinguishable evidence, newer data
def test_an_indistinguishable_challenger_fitted_on_newer_days_replaces_the_champion():
    evalset, same = scores(0.3)  # ROC-AUC ~0.58: below the floor, as is the champion
    d = decide(FEED, evalset, "IForest", same, same.copy(), newer_days=["2026-02-24"])
    assert d.comparison["ci_low"] == d.comparison["ci_high"] == 0.0
    assert d.promote and d.gate_passed, d.gate_reason
    assert "indistinguishable" in d.reason and "1 newer day(s) (2026-02-24)" in d.reason
    assert "cannot tell them apart" in d.gate_reason


def test_an_indistinguishable_challenger_without_newer_days_keeps_the_champion():
    evalset, same = scores(2.0)
    d = decide(FEED, evalset, "IForest", same, same.copy())
    assert not d.promote and "not better" in d.reason


def test_a_merely_equal_challenger_fitted_on_newer_days_keeps_the_champion():
    """Newer days tip the balance only when the rows cannot tell the two apart at all."""
    evalset, challenger = scores(2.0)
    champion = challenger + np.random.default_rng(4).normal(scale=0.05, size=len(challenger))
    d = decide(FEED, evalset, "IForest", challenger, champion, newer_days=["2026-02-24"])
    assert d.comparison["ci_low"] < 0 < d.comparison["ci_high"]
    assert not d.promote and "not better" in d.reason


# ------------------------------------------------ a champion that failed its checks
FAILED = "sensor cpu__retrain_sensor: 1 failed check(s) of champion 6 on 2026-02-25 -- drift_within_bounds error"


def at_par(seed: int = 4):
    evalset, challenger = scores(2.0)
    champion = challenger + np.random.default_rng(seed).normal(scale=0.05, size=len(challenger))
    return evalset, challenger, champion


def after_failed_checks(evalset, challenger, champion):
    """The decision of a sensor retrain: the champion failed its checks, the challenger saw 02-25."""
    return decide(
        FEED,
        evalset,
        "INNE",
        challenger,
        champion,
        newer_days=["2026-02-25"],
        champion_failed=FAILED,
    )


def test_an_at_par_challenger_on_newer_days_replaces_a_champion_that_failed_its_checks():
    evalset, challenger, champion = at_par()
    d = after_failed_checks(evalset, challenger, champion)
    assert d.comparison["ci_low"] < 0 < d.comparison["ci_high"]
    assert d.promote and d.gate_passed, d.reason
    assert "at par" in d.reason and "(2026-02-25)" in d.reason and "failed its checks" in d.reason


@pytest.mark.parametrize(
    "why",
    ["no newer days", "checks passed", "setting off", "worse with confidence"],
)
def test_a_failing_champion_is_kept_without_each_condition(why):
    evalset, challenger, champion = at_par()
    feed, newer, failed = FEED, ["2026-02-25"], FAILED
    if why == "no newer days":
        newer = []
    elif why == "checks passed":
        failed = None
    elif why == "setting off":
        feed = FEED.model_copy(
            update={
                "lifecycle": FEED.lifecycle.model_copy(update={"replace_failing_champion": False})
            }
        )
    else:
        _, champion = scores(2.6, seed=0)  # the champion separates better: the challenger is worse
    d = decide(
        feed, evalset, "INNE", challenger, champion, newer_days=newer, champion_failed=failed
    )
    assert not d.promote, (why, d.reason)


@pytest.mark.parametrize(("sep", "seed", "passes"), [(0.28, 5, True), (0.29, 7, False)])
def test_a_weak_at_par_challenger_passes_the_floor_only_against_a_weaker_failing_champion(
    sep, seed, passes
):
    evalset, challenger = scores(0.3)  # ROC-AUC 0.589, below the floor
    _, champion = scores(sep, seed=seed)  # 0.561 (weaker) / 0.596 (stronger), at par on AP
    d = after_failed_checks(evalset, challenger, champion)
    assert d.comparison["ci_low"] < 0 < d.comparison["ci_high"]
    assert "at par" in d.reason
    assert d.promote is passes and d.gate_passed is passes, d.gate_reason
    if passes:
        assert "but the champion's is lower (0.561)" in d.gate_reason
        assert "at par on average precision while the champion failed its checks" in d.gate_reason
    else:
        assert "below lifecycle.min_auc = 0.6" in d.gate_reason and "but" not in d.gate_reason
