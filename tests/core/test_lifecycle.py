"""The lifecycle rules without Dagster: holdout split, candidates, evaluation sets, champion decision."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.lifecycle import (
    candidate_names,
    decide,
    evaluate,
    evaluation_set,
    score_models,
    split_holdout,
    train_candidates,
)

FEED = {
    "name": "telemetry",
    "source": {"kind": "demo"},
    "event_time": "event_time",
    "record_key": "reading_id",
    "label": "is_anomaly",
    "passthrough": ["machine_id", "anomaly_kind"],
    "features": [
        {"name": "machine_type", "type": "category"},
        {"name": "rpm"}, {"name": "power_kw"}, {"name": "temperature_c"},
        {"name": "vibration_mm_s"}, {"name": "pressure_bar"},
    ],
    "partitioning": {"start_date": "2026-11-01"},
    "detector": {"name": "KNN", "contamination": 0.03},
    "lifecycle": {"candidates": ["IForest", "HBOS"], "n_boot": 300},
}


def feed(**changes):
    data = {**FEED, **changes}
    if "lifecycle" in changes:
        data["lifecycle"] = {**FEED["lifecycle"], **changes["lifecycle"]}
    return parse_feed(data)


@pytest.fixture(scope="module")
def window():
    settings = DemoSettings(machines=3, interval_minutes=10, anomaly_rate=0.03)
    return pd.concat([generate_day(dt.date(2026, 11, d), settings) for d in range(1, 5)], ignore_index=True)


def test_holdout_is_the_last_days_of_the_window(window):
    train, holdout = split_holdout(window, feed(lifecycle={"holdout_days": 1}))
    assert set(pd.to_datetime(holdout["event_time"], utc=True).dt.day) == {4}
    assert set(pd.to_datetime(train["event_time"], utc=True).dt.day) == {1, 2, 3}
    assert len(train) + len(holdout) == len(window)


def test_one_day_window_holds_out_its_latest_fifth(window):
    one_day = window[pd.to_datetime(window["event_time"], utc=True).dt.day == 2]
    train, holdout = split_holdout(one_day, feed())
    assert len(holdout) == pytest.approx(0.2 * len(one_day), abs=1)
    assert pd.to_datetime(train["event_time"]).max() <= pd.to_datetime(holdout["event_time"]).min()


def test_candidates_put_the_feed_detector_first_and_skip_semi_supervised_without_labels():
    assert candidate_names(feed(), 1000) == ["KNN", "IForest", "HBOS"]
    unlabelled = feed(label=None, lifecycle={"candidates": ["XGBOD", "ECOD"]})
    assert candidate_names(unlabelled, 1000) == ["KNN", "ECOD"]
    assert len(candidate_names(feed(lifecycle={"candidates": None, "max_candidates": 3}), 5000)) == 3


def test_unknown_candidate_is_named():
    with pytest.raises(Exception, match="unknown detector 'IForrest'"):
        candidate_names(feed(lifecycle={"candidates": ["IForrest"]}), 1000)


def test_labelled_holdout_is_evaluated_on_its_labels(window):
    f = feed(lifecycle={"min_labelled_anomalies": 5})
    train, holdout = split_holdout(window, f)
    evalset = evaluation_set(f, train, holdout)
    assert evalset.kind == "labels" and evalset.n_synthetic == 0
    assert evalset.n_positive == int(holdout["is_anomaly"].sum())


def test_feedback_overrides_labels_and_stands_alone_without_a_label_column(window):
    f = feed(label=None, lifecycle={"min_labelled_anomalies": 3})
    train, holdout = split_holdout(window, f)
    keys = holdout["reading_id"].astype(str)
    feedback = pd.DataFrame({"record_key": keys.iloc[:10], "label": [1, 1, 1, 0, 0, 0, 0, 1, 0, 0]})
    evalset = evaluation_set(f, train, holdout, feedback)
    assert evalset.kind == "feedback"
    assert len(evalset.y) == 10 and evalset.n_positive == 4


def test_too_few_labels_fall_back_to_synthetic_anomalies(window):
    f = feed(lifecycle={"min_labelled_anomalies": 10_000, "synthetic_anomalies": 200})
    train, holdout = split_holdout(window, f)
    evalset = evaluation_set(f, train, holdout, random_state=1)
    assert evalset.kind == "synthetic"
    assert (evalset.n_holdout, evalset.n_synthetic, evalset.n_positive) == (len(holdout), 200, 200)
    assert sum(evalset.synthetic_kinds.values()) == 200
    assert list(evalset.frame.columns) == list(holdout.columns)


def test_candidates_are_fitted_evaluated_and_a_broken_one_is_reported(window):
    f = feed(lifecycle={"candidates": ["IForest", "PCA"], "min_labelled_anomalies": 5},
             detector={"name": "KNN", "contamination": 0.03, "params": {"n_neighbors": 10 ** 6}})
    train, holdout = split_holdout(window, f)
    candidates = train_candidates(f, train, holdout, candidate_names(f, len(train)))
    assert [c.name for c in candidates] == ["KNN", "IForest", "PCA"]
    assert candidates[0].model is None and "n_neighbors" in candidates[0].error
    evalset = evaluation_set(f, train, holdout)
    fitted = {c.name: c.model for c in candidates if c.model is not None}
    table = evaluate(candidates, evalset, score_models(fitted, evalset))
    assert table.loc["IForest", "roc_auc"] > 0.8
    assert table.loc["KNN", "error"] is not None and np.isnan(table.loc["KNN", "roc_auc"])
    # calibrated on training + holdout scores
    iforest = fitted["IForest"]
    assert iforest.n_calibration_ == len(train) + len(holdout)


def _evalset(n=2000, positives=60, seed=0):
    from pynomaly_core.lifecycle import EvaluationSet

    y = np.r_[np.zeros(n - positives, int), np.ones(positives, int)]
    rng = np.random.default_rng(seed)
    good = y * 2.5 + rng.normal(size=n)
    weak = y * 1.0 + rng.normal(size=n)
    return EvaluationSet(pd.DataFrame({"x": good}), y, "labels", n), good, weak


def test_a_better_challenger_is_promoted_with_its_evidence():
    evalset, good, weak = _evalset()
    d = decide(feed(), evalset, "IForest", good, weak)
    assert d.promote and d.gate_passed
    assert d.comparison["ci_low"] > 0 and "beats the champion" in d.reason


def test_an_equal_challenger_does_not_replace_the_champion():
    evalset, good, _ = _evalset()
    d = decide(feed(), evalset, "IForest", good, good.copy())
    assert not d.promote and d.gate_passed and "not better" in d.reason


def test_a_forced_worse_challenger_is_blocked_by_the_gate():
    evalset, good, weak = _evalset()
    d = decide(feed(), evalset, "HBOS", weak, good, forced=True)
    assert not d.promote and not d.gate_passed
    assert "blocked by the promotion gate" in d.reason and "max_regression" in d.gate_reason


def test_first_champion_must_reach_min_auc():
    evalset, _, weak = _evalset()
    noise = np.random.default_rng(3).normal(size=len(evalset.y))
    d = decide(feed(lifecycle={"min_auc": 0.7}), evalset, "HBOS", noise, None)
    assert not d.promote and not d.gate_passed and "lifecycle.min_auc" in d.gate_reason
    ok = decide(feed(lifecycle={"min_auc": 0.55}), evalset, "HBOS", weak, None)
    assert ok.promote and ok.reason.startswith("no current champion")
