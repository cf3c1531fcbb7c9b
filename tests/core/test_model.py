"""AnomalyModel: preprocessing + detector + calibration, saved signed and loaded identically."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.detectors import ModelIntegrityError, load_object
from pynomaly_core.model import AnomalyModel

FEATURES = [FeatureSpec(name=n) for n in ("rpm", "power_kw", "temperature_c", "vibration_mm_s", "pressure_bar")] + [
    FeatureSpec(name="machine_type", type="category")
]
SETTINGS = DemoSettings(machines=3, interval_minutes=10, anomaly_rate=0.02)


@pytest.fixture(scope="module")
def fitted():
    train = pd.concat([generate_day(dt.date(2026, 11, d), SETTINGS) for d in range(1, 5)], ignore_index=True)
    return AnomalyModel(FEATURES, "KNN", contamination=0.02).fit(train)


def test_scores_separate_labelled_anomalies_on_a_new_day(fitted):
    day = generate_day(dt.date(2026, 11, 6), SETTINGS)
    scored = fitted.score(day)
    assert roc_auc_score(day["is_anomaly"], scored["score"]) > 0.9


def test_scored_frame_has_flags_consistent_with_threshold_and_severity(fitted):
    scored = fitted.score(generate_day(dt.date(2026, 11, 6), SETTINGS))
    assert (scored["is_anomaly"] == (scored["score"] > fitted.threshold_)).all()
    assert set(scored.loc[~scored["is_anomaly"], "severity"]) == {"none"}
    assert "none" not in set(scored.loc[scored["is_anomaly"], "severity"])
    assert scored["normalized_score"].between(0, 1).all()
    tops = scored.loc[scored["is_anomaly"], "top_features"].map(json.loads)
    assert tops.map(len).eq(3).all() and not any("=" in f for row in tops for f in row)


def test_save_and_load_give_identical_scores(fitted, tmp_path):
    day = generate_day(dt.date(2026, 11, 7), SETTINGS)
    fitted.save(tmp_path / "model")
    loaded = load_object(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.score(day), fitted.score(day))


def test_tampered_model_file_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    target = path / "preprocessor.joblib"
    target.write_bytes(target.read_bytes() + b"\x00")
    with pytest.raises(ModelIntegrityError, match="preprocessor.joblib"):
        load_object(path)


def test_model_signed_with_another_key_is_refused(fitted, tmp_path, monkeypatch):
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", "key-one")
    path = fitted.save(tmp_path / "model")
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", "key-two")
    with pytest.raises(ModelIntegrityError, match="signature"):
        load_object(path)


def test_expected_digest_pins_the_exact_model(fitted, tmp_path):
    a = fitted.save(tmp_path / "a")
    with pytest.raises(ModelIntegrityError, match="sha256 differs"):
        load_object(a, expected_sha256="0" * 64)


def test_severity_levels_order_with_score():
    from pynomaly_core.severity import severity

    labels = severity(np.array([0.0, 1.1, 1.3, 1.7, 2.5]), threshold=1.0, max_training_score=2.0)
    assert labels.tolist() == ["none", "low", "medium", "high", "critical"]


def test_semi_supervised_detector_learns_from_the_labels():
    pytest.importorskip("xgboost")
    train = pd.concat([generate_day(dt.date(2026, 11, d), SETTINGS) for d in range(1, 4)], ignore_index=True)
    model = AnomalyModel(FEATURES, "XGBOD", contamination=0.02).fit(train, train["is_anomaly"])
    day = generate_day(dt.date(2026, 11, 6), SETTINGS)
    assert roc_auc_score(day["is_anomaly"], model.score(day)["score"]) > 0.9


def test_semi_supervised_detector_without_labels_names_the_setting():
    train = generate_day(dt.date(2026, 11, 1), SETTINGS)
    with pytest.raises(ValueError, match="needs labels: set the feed's 'label' column"):
        AnomalyModel(FEATURES, "XGBOD").fit(train)
