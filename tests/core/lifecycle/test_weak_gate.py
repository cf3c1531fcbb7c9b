"""The promotion gate's ROC-AUC floor does not keep a champion that the same rows show is weaker."""

import numpy as np
import pandas as pd

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
