"""Refit on the whole window (``lifecycle.refit_on_window``): the registered model has seen the
window's last day, and its p-values are calibrated on rows its detector was not fitted on."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pynomaly_core.data.config import FeatureSpec, parse_feed
from pynomaly_core.lifecycle.refit import out_of_fold_ranks, refit_on_window, time_blocks
from pynomaly_core.model import QUANTILE_LEVELS, AnomalyModel

SIGNING_KEY = "refit-test-key-0123456789abcdef"
ROWS_A_DAY = 288  # 5-minute readings


def cpu_feed(**lifecycle):
    return parse_feed(
        {
            "name": "cpu",
            "source": {"kind": "csv", "path": "data/{date}.csv"},
            "event_time": "timestamp",
            "record_key": "reading_id",
            "features": [{"name": "value", "type": "float"}],
            "partitioning": {"start_date": "2026-02-01"},
            "detector": {"name": "IForest", "contamination": 0.01},
            "lifecycle": {"candidates": ["IForest"], **lifecycle},
        }
    )


def days_of(levels, *, start="2026-02-01", seed=0):
    """One 5-minute reading a row, a day per ``(mean, sd)`` of ``levels``."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=len(levels) * ROWS_A_DAY, freq="5min", tz="UTC")
    values = np.concatenate([rng.normal(m, s, ROWS_A_DAY) for m, s in levels])
    return pd.DataFrame({"timestamp": times, "reading_id": np.arange(len(times)), "value": values})


#: six days at about 43 % CPU, then a level drop that stays, below everything the six saw
BEFORE, AFTER = (43.0, 3.0), (30.0, 0.6)


@pytest.fixture(scope="module")
def level_drop():
    return days_of([BEFORE] * 6 + [AFTER])


def test_time_blocks_are_contiguous_days_covering_every_row_once(level_drop):
    blocks = time_blocks(level_drop, "timestamp", 3)
    assert len(blocks) == 3
    assert np.array_equal(np.sum(blocks, axis=0), np.ones(len(level_drop)))
    days = level_drop["timestamp"].dt.strftime("%Y-%m-%d")
    # whole days, in time order, the latest day in the last block
    assert [sorted(days[b].unique()) for b in blocks] == [
        ["2026-02-01", "2026-02-02", "2026-02-03"],
        ["2026-02-04", "2026-02-05"],
        ["2026-02-06", "2026-02-07"],
    ]


def test_a_one_day_window_is_cut_into_blocks_of_rows_in_time_order(level_drop):
    day = level_drop.iloc[:ROWS_A_DAY].iloc[::-1]  # rows not in time order
    blocks = time_blocks(day, "timestamp", 4)
    assert [int(b.sum()) for b in blocks] == [72, 72, 72, 72]
    firsts = [day["timestamp"][b].min() for b in blocks]
    lasts = [day["timestamp"][b].max() for b in blocks]
    assert all(last < first for last, first in zip(lasts[:-1], firsts[1:], strict=True))


def test_the_refitted_model_has_learnt_the_last_day_of_its_window(level_drop):
    """The day that triggered a retrain is the window's last: fitted without it (the holdout),
    the model flags nearly every row of the new level; refitted on the whole window, no more than
    a normal day's share."""
    feed = cpu_feed()
    config = AnomalyModel(feed.features, detector="IForest", contamination=0.01, random_state=42)
    last_day = level_drop["timestamp"] >= pd.Timestamp("2026-02-07", tz="UTC")
    without_holdout = config.unfitted().fit(level_drop[~last_day])
    refit = refit_on_window(config, level_drop, "timestamp", folds=5)
    assert refit.model.training_rows_ == len(level_drop)
    assert refit.fitted_days[-1] == "2026-02-07" and len(refit.fitted_days) == 7
    next_day = days_of([AFTER], start="2026-02-08", seed=1)
    flagged = {
        "without holdout": np.mean(
            without_holdout.decision_function(next_day) > without_holdout.threshold_
        ),
        "refitted": np.mean(refit.model.decision_function(next_day) > refit.model.threshold_),
    }
    assert flagged["without holdout"] > 0.5, flagged
    assert flagged["refitted"] <= 3 * 0.01, flagged


def test_calibration_scores_come_from_models_that_did_not_see_the_rows(level_drop):
    config = AnomalyModel(
        cpu_feed().features, detector="IForest", contamination=0.01, random_state=42
    )
    refit = refit_on_window(config, level_drop, "timestamp", folds=5)
    ranks = out_of_fold_ranks(config, level_drop, "timestamp", None, 5)
    assert refit.folds == 5 and refit.calibration == "cross-fit (5 folds)"
    assert refit.model.n_calibration_ == len(level_drop)
    np.testing.assert_allclose(
        np.sort(refit.model.calibration_),
        np.sort(np.interp(ranks, QUANTILE_LEVELS, refit.model.quantiles_)),
    )
    # each block's ranks are its fold model's, fitted on the other days only: the last day (a
    # block of its own: 7 days in 5 blocks) by a model that never saw its new level
    last_day = (level_drop["timestamp"] >= pd.Timestamp("2026-02-07", tz="UTC")).to_numpy()
    fold = config.unfitted().fit(level_drop[~last_day].reset_index(drop=True))
    raw = fold.decision_function(level_drop[last_day].reset_index(drop=True))
    np.testing.assert_allclose(ranks[last_day], np.interp(raw, fold.quantiles_, QUANTILE_LEVELS))
    # so the calibration is not the refitted detector's scores of its own rows: 1 % of those are
    # above its threshold, while the last day's 288 out-of-fold rows rank above it
    above = np.mean(refit.model.calibration_ > refit.model.threshold_)
    assert np.mean(refit.model.train_scores_ > refit.model.threshold_) <= 0.011
    assert above >= 0.9 * last_day.mean(), above


@pytest.mark.parametrize("detector", ["IForest", "KNN", "LOF", "OCSVM"])
def test_p_values_of_new_normal_rows_are_uniform(detector):
    """Conformal validity on held-out normal data: P(p <= a) ~ a, and the p-values' distribution
    is within a few points of the uniform one. OCSVM's raw scale depends on its training rows:
    raw fold scores as calibration made 2.6 % of new rows p <= 0.01 (the ranks: 1.2 %)."""
    rng = np.random.default_rng(5)
    n = 5 * ROWS_A_DAY
    times = pd.date_range("2026-02-01", periods=2 * n, freq="5min", tz="UTC")
    values = rng.normal(size=(2 * n, 2))
    frame = pd.DataFrame({"timestamp": times, "a": values[:, 0], "b": values[:, 1]})
    features = [FeatureSpec(name="a", type="float"), FeatureSpec(name="b", type="float")]
    config = AnomalyModel(features, detector=detector, contamination=0.01, random_state=42)
    refit = refit_on_window(config, frame.iloc[:n], "timestamp", folds=5)
    p = refit.model.p_values(refit.model.decision_function(frame.iloc[n:]))
    for alpha in (0.01, 0.05, 0.1, 0.5):
        assert np.mean(p <= alpha) == pytest.approx(alpha, abs=max(0.4 * alpha, 0.01)), alpha
    assert stats.kstest(p, "uniform").statistic < 0.08


# ------------------------------------------------------------------ through the lifecycle
def _batch(tmp_path, monkeypatch, feed, window):
    pytest.importorskip("mlflow")
    from pynomaly_core.lifecycle import train_candidate_batch
    from pynomaly_core.storage import FrameStore
    from pynomaly_core.tracking import Tracker

    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", SIGNING_KEY)
    tracker = Tracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts")
    )
    return train_candidate_batch(
        feed,
        window,
        frames=FrameStore(tmp_path / "frames"),
        model_dir=lambda version: tmp_path / "models" / version,
        tracker=tracker,
        run_id="run-refit-0001",
    ), tracker


@pytest.mark.parametrize("refit", [True, False])
def test_the_registered_model_has_seen_the_window_s_last_day_only_when_refitted(
    tmp_path, monkeypatch, level_drop, refit
):
    from pynomaly_core.detectors import load_object

    batch, tracker = _batch(tmp_path, monkeypatch, cpu_feed(refit_on_window=refit), level_drop)
    value = batch.to_value()
    (entry,) = value["candidates"]
    model = load_object(entry["model_dir"], expected_sha256=entry["manifest_sha256"])
    next_day = days_of([AFTER], start="2026-02-08", seed=1)
    flagged = float(np.mean(model.decision_function(next_day) > model.threshold_))
    # the evidence is the evaluation of the model fitted without the holdout, either way
    assert value["training_rows"] == 6 * ROWS_A_DAY and value["holdout_rows"] == ROWS_A_DAY
    run = tracker.client.get_run(entry["mlflow_run_id"])
    if refit:
        assert model.training_rows_ == len(level_drop) and flagged <= 0.03
        assert entry["fitted_days"][-1] == "2026-02-07" and entry["calibration"].startswith(
            "cross-fit"
        )
        assert run.data.tags["pynomaly.fitted_days"] == "2026-02-01..2026-02-07"
        assert run.data.params["fitted_rows"] == str(len(level_drop))
        assert value["refit"]["detector"] == "IForest" and value["refit"]["error"] is None
    else:
        assert model.training_rows_ == 6 * ROWS_A_DAY and flagged > 0.5
        assert entry["fitted_days"][-1] == "2026-02-06"
        assert entry["calibration"] == "training+holdout" and value["refit"] is None
        assert run.data.tags["pynomaly.fitted_days"] == "2026-02-01..2026-02-06"


def test_a_retrain_that_only_adds_the_drifted_day_replaces_the_champion(tmp_path, monkeypatch):
    """The retrain after a level drop: its evaluated candidate is the champion's configuration on
    the champion's days (the window minus the new day, held out), so the evidence ties exactly;
    the refitted model has seen the new day and replaces the stale champion."""
    from pynomaly_core.lifecycle import promote
    from pynomaly_core.storage import FrameStore

    feed = cpu_feed(refit_on_window=True)
    six = days_of([BEFORE] * 6)
    seven = pd.concat([six, days_of([AFTER], start="2026-02-07", seed=5)], ignore_index=True)
    seven["reading_id"] = np.arange(len(seven))
    frames = FrameStore(tmp_path / "frames")
    first, tracker = _batch(tmp_path, monkeypatch, feed, six)
    assert promote(feed, first.to_value(), frames, tracker, run_id="run-1").decision.promote
    from pynomaly_core.lifecycle import train_candidate_batch

    second = train_candidate_batch(
        feed,
        seven,
        frames=frames,
        model_dir=lambda version: tmp_path / "models" / version,
        tracker=tracker,
        run_id="run-refit-0002",
    )
    promotion = promote(feed, second.to_value(), frames, tracker, run_id="run-2")
    decision = promotion.decision
    assert decision.comparison["delta"] == 0.0, decision.reason
    assert decision.promote, decision.reason
    assert "1 newer day(s) (2026-02-07)" in decision.reason
    assert promotion.record.fitted_days[-1] == "2026-02-07"
    model = promotion.record.load()
    next_day = days_of([AFTER], start="2026-02-08", seed=1)
    assert np.mean(model.decision_function(next_day) > model.threshold_) <= 0.03


def test_the_holdout_of_a_refitted_model_is_scored_out_of_sample_for_the_reference(level_drop):
    """The monitoring reference's holdout scores: the refitted model has seen the holdout (in-sample,
    low); held_out_scores gives them as a model that had not seen it does, on the refit's scale."""
    from pynomaly_core.lifecycle.refit import held_out_scores

    feed = cpu_feed()
    config = AnomalyModel(feed.features, detector="IForest", contamination=0.01, random_state=0)
    refitted = refit_on_window(config, level_drop, "timestamp", folds=5).model
    train, holdout = level_drop.iloc[: 6 * ROWS_A_DAY], level_drop.iloc[6 * ROWS_A_DAY :]
    in_sample = refitted.decision_function(holdout)
    out = held_out_scores(refitted, train, holdout, level_drop, "timestamp")
    assert out.shape == (ROWS_A_DAY,) and np.isfinite(out).all()
    # the level drop: unseen, it is anomalous; seen, it is not
    assert np.mean(in_sample > refitted.threshold_) <= 0.05
    assert np.mean(out > refitted.threshold_) >= 0.5
    # a day like the training days: out of sample it is flagged about as often as contamination says
    steady = days_of([BEFORE] * 7, seed=3)
    steady_model = refit_on_window(config, steady, "timestamp", folds=5).model
    steady_out = held_out_scores(
        steady_model,
        steady.iloc[: 6 * ROWS_A_DAY],
        steady.iloc[6 * ROWS_A_DAY :],
        steady,
        "timestamp",
    )
    assert np.mean(steady_out > steady_model.threshold_) <= 0.04
