"""Drift and the normal-days profile cover a feed's derived columns, computed with the champion's
own derivation (stored beside its reference) and, for a scored reference day, its warm-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.drift import build_normal_days, build_reference
from pynomaly_core.drift.normal import _warm, derived_columns
from pynomaly_core.drift.reference import load_derivation, save_derivation
from pynomaly_core.features import Derivation
from pynomaly_core.model import AnomalyModel, SeriesOrder
from tests.core.drift.test_drift import SERIES_FEED, moving_series

DERIVED = {
    "features": [
        {"source": "value", "kind": "diff"},
        {"source": "value", "kind": "rolling_zscore", "window": 12},
    ]
}
NAMES = ["value__diff_1", "value__rolling_zscore_12"]


@pytest.fixture(scope="module")
def feed():
    return parse_feed({**SERIES_FEED, "derived": DERIVED})


@pytest.fixture(scope="module")
def champion(feed):
    window = moving_series(8)
    model = AnomalyModel(
        feed.features,
        "IForest",
        contamination=0.01,
        params={"n_estimators": 50},
        derivation=Derivation.of(feed),
        series=SeriesOrder("ts", None),
    ).fit(window)
    return window, model


def test_the_profile_measures_the_derived_columns_with_the_champions_derivation(feed, champion):
    window, model = champion
    assert derived_columns(model, ["value", *NAMES]) == NAMES
    normal = build_normal_days(
        window, feed, model, numeric=["value", *NAMES], categorical=[], canaries=None
    )
    assert normal.built, normal.reason
    assert {f"psi:{n}" for n in NAMES} <= set(normal.table.columns)
    assert normal.table[[f"psi:{n}" for n in NAMES]].notna().all().all()
    ranges = normal.ranges(feed.monitoring)
    assert all(ranges.get(f"psi:{n}") is not None for n in NAMES)


def test_a_reference_day_is_scored_with_its_warm_up(champion):
    window, model = champion
    day = "2026-01-08"
    tail = _warm(model, window, day)
    assert (
        len(tail) == 12
        and (pd.to_datetime(tail["ts"], utc=True) < pd.Timestamp(day, tz="UTC")).all()
    )
    frame = window[window["ts"].dt.strftime("%Y-%m-%d") == day]
    long_run = pd.Series(model.decision_function(window), index=window.index)
    np.testing.assert_allclose(
        model.decision_function(frame, tail), long_run.loc[frame.index], rtol=1e-9
    )


def test_the_reference_covers_the_derived_columns_and_keeps_the_derivation(champion, tmp_path):
    window, model = champion
    rows = model.derive(window)
    reference = build_reference(
        rows[["value", *NAMES]], ["value", *NAMES], [], model.decision_function(window), 0.01
    )
    assert reference.features == ["value", *NAMES]
    save_derivation(tmp_path, model.derivation)
    assert load_derivation(tmp_path) == model.derivation
    save_derivation(tmp_path / "plain", None)
    assert (
        load_derivation(tmp_path / "plain") is None and load_derivation(tmp_path / "none") is None
    )
