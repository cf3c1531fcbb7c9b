"""An AnomalyModel with a derivation derives its time-aware features itself: in fit, score and
decision_function, with the previous rows as warm-up, and the same way after save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.detectors import load_object
from pynomaly_core.features import Derivation, derive, history_tail, warmup_covered
from pynomaly_core.model import AnomalyModel
from pynomaly_core.streaming import ScoringLayout, score_frame, score_parquet
from tests.core.features.test_features import BASE, DERIVED, FEED, day, telemetry

LAYOUT = ScoringLayout(
    record_key="id",
    event_time="ts",
    passthrough=("machine",),
    label=None,
    model_name="IForest",
    model_version="1",
)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return telemetry(days=3, machines=3, seed=1)


@pytest.fixture(scope="module")
def model(rows) -> AnomalyModel:
    train = pd.concat([day(rows, "2026-11-01"), day(rows, "2026-11-02")])
    return AnomalyModel(
        FEED.features, "IForest", contamination=0.02, derivation=Derivation.of(FEED)
    ).fit(train)


def test_the_model_sees_the_derived_columns_after_the_declared_features(model):
    assert model.preprocessor_.feature_names_out_[:2] == ["temp", "load"]
    assert set(FEED.derived_names) <= set(model.preprocessor_.feature_names_out_)
    assert Derivation.of(FEED).sources()["temp__rolling_zscore_12"] == "temp"
    assert Derivation.of(FEED).sources()["load_jitter"] == "load"


def test_a_day_scored_alone_with_its_warmup_equals_the_day_inside_the_long_run(rows, model):
    day3 = day(rows, "2026-11-03")
    start = pd.Timestamp("2026-11-03", tz="UTC")
    alone = model.decision_function(
        day3, history=history_tail(day(rows, "2026-11-02"), FEED, start)
    )
    long = pd.Series(model.decision_function(rows), index=rows.index).loc[day3.index].to_numpy()
    np.testing.assert_allclose(alone, long, rtol=0, atol=1e-9)
    # without the warm-up the first rows of each machine differ: the warm-up is what makes them equal
    cold = model.decision_function(day3)
    assert not np.allclose(cold, long)


def test_score_keeps_row_order_and_index(rows, model):
    day3 = day(rows, "2026-11-03")
    scored = model.score(day3, history=day(rows, "2026-11-02"))
    assert list(scored.index) == list(day3.index)
    np.testing.assert_allclose(
        scored["score"], model.decision_function(day3, history=day(rows, "2026-11-02"))
    )


def test_a_loaded_model_derives_the_same_way(tmp_path, rows, model):
    day3 = day(rows, "2026-11-03")
    history = day(rows, "2026-11-02")
    model.save(tmp_path / "m", key=b"k" * 32)
    loaded = load_object(tmp_path / "m", key=b"k" * 32)
    assert loaded.derivation == model.derivation
    np.testing.assert_allclose(
        loaded.decision_function(day3, history=history),
        model.decision_function(day3, history=history),
        atol=1e-12,
    )


def test_chunked_scoring_passes_each_chunk_the_tail_before_it(tmp_path, rows, model):
    day3 = day(rows, "2026-11-03").sort_values("ts").reset_index(drop=True)
    history = history_tail(day(rows, "2026-11-02"), FEED, pd.Timestamp("2026-11-03", tz="UTC"))
    source = tmp_path / "validated.parquet"
    day3.to_parquet(source, index=False)
    result = score_parquet(
        model, source, tmp_path / "scored.parquet", LAYOUT, chunk_rows=97, history=history
    )
    memory = score_frame(model, day3, LAYOUT, history=history)
    assert result.chunks > 5
    np.testing.assert_allclose(result.scores, memory["score"].to_numpy(), rtol=0, atol=1e-9)


def test_a_model_without_derivation_ignores_history(rows):
    plain = parse_feed(BASE)
    train = day(rows, "2026-11-01")
    model = AnomalyModel(plain.features, "IForest", contamination=0.02).fit(train)
    assert model.derivation is None
    day2 = day(rows, "2026-11-02")
    np.testing.assert_array_equal(
        model.decision_function(day2, history=train), model.decision_function(day2)
    )
    assert model.preprocessor_.feature_names_out_ == ["temp", "load"]
    assert DERIVED  # the derived feed of test_features is the one above
    assert derive(train, plain) is train


def test_warmup_covered_asks_for_the_longest_look_back_per_entity(rows):
    start = pd.Timestamp("2026-11-03", tz="UTC")
    full = day(rows, "2026-11-02")
    assert warmup_covered(full, FEED, start, entities=["m0", "m1", "m2"])
    # a sparse day: five rows of each machine in its last hour are not the 12 rows the z-score needs
    last_hour = full[pd.to_datetime(full["ts"], utc=True) >= start - pd.Timedelta("50min")]
    assert not warmup_covered(last_hour.groupby("machine").tail(5), FEED, start)
    # ... and rows that do not reach back the hour of rolling_max(1h) are not enough either
    assert not warmup_covered(last_hour, FEED, start)
    # a machine that is not in the history at all is not covered
    assert not warmup_covered(full[full["machine"] != "m2"], FEED, start, entities=["m0", "m2"])


def test_rolling_statistics_do_not_depend_on_where_the_series_starts():
    # a near-flat stretch (std 3.5e-5 at a level of 80): pandas' online sums carried from the first
    # row changed this z-score by 0.0045 between a day alone and the same day in a long history
    feed = parse_feed(
        {
            **BASE,
            "entity": None,
            "derived": {"features": [{"source": "temp", "kind": "rolling_zscore", "window": 12}]},
        }
    )
    ts = pd.date_range("2026-11-01", periods=600, freq="5min", tz="UTC")
    rng = np.random.default_rng(0)
    temp = (
        np.where(np.arange(600) % 50 < 40, 79.9998464, 79.99996928)
        + np.r_[rng.normal(0, 5, 300), np.zeros(300)]
    )
    frame = pd.DataFrame({"id": np.arange(600).astype(str), "ts": ts, "temp": temp, "load": 1})
    long = derive(frame, feed)["temp__rolling_zscore_12"].to_numpy()
    alone = derive(frame.iloc[400:], feed, history=frame.iloc[388:400])[
        "temp__rolling_zscore_12"
    ].to_numpy()
    np.testing.assert_array_equal(alone, long[400:])
