"""A sequence-aware detector inside AnomalyModel gets its rows in event-time order per entity,
with the previous rows' tail as warm-up (derived features' look-back plus the window), so a day
scored alone equals the same day inside a long run, row for row, in memory and chunked; and a
time-aware feed's default portfolio holds sequence-aware candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.detectors import load_object
from pynomaly_core.features import Derivation
from pynomaly_core.lifecycle.candidates import candidate_names, train_candidates
from pynomaly_core.model import AnomalyModel, SeriesOrder
from pynomaly_core.storage import FrameStore
from pynomaly_core.streaming import ScoringLayout, score_frame, score_parquet
from tests.core.features.test_features import BASE, DERIVED, FEED, day, telemetry

pytest.importorskip("torch")

SMALL = {"window_size": 8, "channels": [8, 4], "epochs": 2, "batch_size": 128, "random_state": 0}
DAY3 = pd.Timestamp("2026-11-03", tz="UTC")
LAYOUT = ScoringLayout(
    record_key="id",
    event_time="ts",
    passthrough=("machine",),
    label=None,
    model_name="ConvAE",
    model_version="1",
)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return telemetry(days=3, machines=2, seed=3)


@pytest.fixture(scope="module")
def model(rows) -> AnomalyModel:
    """ConvAE over the raw and derived features, in time order per machine."""
    train = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    return AnomalyModel(
        FEED.features,
        "ConvAE",
        contamination=0.02,
        params=SMALL,
        derivation=Derivation.of(FEED),
        series=SeriesOrder("ts", "machine"),
    ).fit(train)


def test_the_warm_up_adds_the_window_to_the_derived_look_back(model, rows):
    assert model.sequence_rows == 7 and model.needs_history
    assert model.warmup().rows == 12 + 7  # rolling_zscore 12 rows, then the window's 7 rows
    previous = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    tail = model.history_tail(previous, DAY3)
    assert tail.groupby("machine").size().min() >= 19
    assert len(tail) < len(previous)
    assert model.warmup_covered(tail, DAY3, day(rows, "2026-11-03")["machine"].to_numpy())
    assert not model.warmup_covered(tail.iloc[-5:], DAY3)


def test_a_day_alone_with_its_tail_equals_the_day_inside_the_long_run(model, rows):
    start = pd.Timestamp("2026-11-02", tz="UTC")
    long_run = model.score(
        rows[pd.to_datetime(rows["ts"]) >= start], history=day(rows, "2026-11-01")
    )
    today = day(rows, "2026-11-03")
    previous = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    alone = model.score(today, history=model.history_tail(previous, DAY3))
    assert list(alone.index) == list(today.index)  # aligned to the rows as given
    np.testing.assert_allclose(alone["score"], long_run.loc[today.index, "score"], rtol=1e-6)
    # without the tail, the first rows of each machine are scored on edge-padded windows
    cold = model.score(today)
    assert not np.allclose(cold["score"], long_run.loc[today.index, "score"], rtol=1e-6)


def test_rows_are_fed_per_entity_in_time_order_whatever_their_order(model, rows):
    today = day(rows, "2026-11-03")
    shuffled = today.sample(frac=1.0, random_state=7)
    a = model.decision_function(today)
    b = pd.Series(model.decision_function(shuffled), index=shuffled.index).loc[today.index]
    np.testing.assert_allclose(a, b.to_numpy(), rtol=1e-6)
    # one machine scored alone gets the same scores: windows never span two machines
    m0 = today[today["machine"] == "m0"]
    mask = (today["machine"] == "m0").to_numpy()
    np.testing.assert_allclose(model.decision_function(m0), a[mask], rtol=1e-6)


def test_without_an_order_the_detector_reads_rows_as_given(rows):
    """The old behaviour, kept for models built without a SeriesOrder: order matters."""
    train = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    bare = AnomalyModel(FEED.features, "ConvAE", contamination=0.02, params=SMALL).fit(train)
    today = day(rows, "2026-11-03")
    ordered = today.sort_values(["machine", "ts"])
    a = pd.Series(bare.decision_function(today), index=today.index)
    b = pd.Series(bare.decision_function(ordered), index=ordered.index)
    assert not np.allclose(a.loc[today.index], b.loc[today.index], rtol=1e-6)


def test_chunked_scoring_and_a_reloaded_model_give_the_in_memory_scores(model, rows, tmp_path):
    previous = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    today = day(rows, "2026-11-03").sort_values("ts").reset_index(drop=True)
    history = model.history_tail(previous, DAY3)[model.history_columns]
    expected = score_frame(model, today, LAYOUT, history=history)
    source = FrameStore(tmp_path / "frames").write(today, ["f", "validated"], "2026-11-03")
    result = score_parquet(
        model, source, tmp_path / "out.parquet", LAYOUT, chunk_rows=100, history=history
    )
    assert result.chunks > 3
    chunked = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_allclose(chunked["score"], expected["score"], rtol=1e-6)
    model.save(tmp_path / "model")
    loaded = load_object(tmp_path / "model")
    assert loaded.series == SeriesOrder("ts", "machine") and loaded.sequence_rows == 7
    np.testing.assert_allclose(
        loaded.score(today, history=history)["score"], expected["score"], rtol=1e-6
    )


def test_a_time_aware_feed_gets_sequence_candidates_in_its_default_portfolio():
    plain = parse_feed({k: v for k, v in BASE.items() if k != "entity"})
    assert not {"ConvAE", "LSTMAE"} & set(candidate_names(plain, 5000))
    for feed in (FEED, parse_feed(BASE)):  # a derived section, or an entity alone
        names = candidate_names(feed, 5000)
        assert {"ConvAE", "LSTMAE"} <= set(names) and len(names) == 5
        assert names[0] == feed.detector.name
    # an explicit list is the user's choice
    chosen = parse_feed({**BASE, "lifecycle": {"candidates": ["IForest", "HBOS"]}})
    assert candidate_names(chosen, 5000) == ["IForest", "HBOS"]


def test_sequence_candidates_train_in_time_order_with_small_settings(rows):
    feed = parse_feed({**BASE, "derived": DERIVED, "lifecycle": {"candidates": ["ConvAE"]}})
    train = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    holdout = day(rows, "2026-11-03")
    (candidate,) = train_candidates(feed, train, holdout, ["ConvAE"])
    assert candidate.error is None, candidate.error
    assert candidate.model.series == SeriesOrder("ts", "machine")
    assert candidate.model.sequence_rows > 0
