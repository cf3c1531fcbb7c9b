"""Preprocessing fitted on training data is applied identically at scoring time."""

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.data.preprocess import FeaturePreprocessor

SPECS = [
    FeatureSpec(name="x", type="float", nullable=True, missing="median"),
    FeatureSpec(name="const", type="float"),
    FeatureSpec(name="kind", type="category"),
]


def train_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0, np.nan], "const": 5.0, "kind": ["a", "b", "a", "b", "a"]}
    )


def test_zero_variance_columns_are_dropped_and_reported():
    pre = FeaturePreprocessor(SPECS).fit(train_frame())
    assert "const" in pre.dropped_constant_
    assert pre.feature_names_out_ == ["x", "kind=a", "kind=b"]


def test_missing_values_are_filled_with_the_training_median():
    pre = FeaturePreprocessor(SPECS, scaling="none").fit(train_frame())
    out = pre.transform(pd.DataFrame({"x": [np.nan], "const": [5.0], "kind": ["a"]}))
    assert out[0, 0] == pytest.approx(2.5)


def test_robust_scaling_centres_on_the_training_median():
    pre = FeaturePreprocessor(SPECS, scaling="robust").fit(train_frame())
    out = pre.transform(pd.DataFrame({"x": [2.5], "const": [5.0], "kind": ["b"]}))
    assert out[0, 0] == pytest.approx(0.0)
    assert out[0, 1:].tolist() == [0.0, 1.0]  # one-hot stays 0/1


def test_unseen_category_encodes_as_all_zeros():
    pre = FeaturePreprocessor(SPECS).fit(train_frame())
    out = pre.transform(pd.DataFrame({"x": [1.0], "const": [5.0], "kind": ["never-seen"]}))
    assert out[0, 1:].tolist() == [0.0, 0.0]


def test_transform_is_deterministic_and_matches_between_calls():
    frame = train_frame()
    pre = FeaturePreprocessor(SPECS).fit(frame)
    np.testing.assert_array_equal(pre.transform(frame), pre.transform(frame.copy()))


def test_all_constant_training_data_is_rejected_with_the_columns_named():
    frame = pd.DataFrame({"x": [1.0] * 4, "const": 5.0, "kind": ["a"] * 4})
    with pytest.raises(ValueError, match="every feature column is constant"):
        FeaturePreprocessor(SPECS).fit(frame)


def test_unknown_scaling_names_the_parameter():
    with pytest.raises(ValueError, match="scaling must be one of"):
        FeaturePreprocessor(SPECS, scaling="log").fit(train_frame())
