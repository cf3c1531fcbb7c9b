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

FEATURES = [
    FeatureSpec(name=n)
    for n in ("rpm", "power_kw", "temperature_c", "vibration_mm_s", "pressure_bar")
] + [FeatureSpec(name="machine_type", type="category")]
SETTINGS = DemoSettings(machines=3, interval_minutes=10, anomaly_rate=0.02)


@pytest.fixture(scope="module")
def fitted():
    train = pd.concat(
        [generate_day(dt.date(2026, 11, d), SETTINGS) for d in range(1, 5)], ignore_index=True
    )
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
    target = path / "preprocessor.npz"
    target.write_bytes(target.read_bytes() + b"\x00")
    with pytest.raises(ModelIntegrityError, match="preprocessor.npz"):
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


def test_p_values_are_conformal_shares_of_calibration_scores():
    from pynomaly_core.severity import calibration_set, p_values

    cal = calibration_set(np.arange(1.0, 100.0))  # 99 scores 1..99
    p = p_values(np.array([0.0, 50.0, 99.0, 1000.0, np.nan]), cal)
    # (1 + #{cal >= s}) / (n + 1)
    assert p[:4].tolist() == pytest.approx([1.0, 51 / 100, 2 / 100, 1 / 100])
    assert np.isnan(p[4])


def test_reduced_calibration_set_keeps_p_values_close():
    from pynomaly_core.severity import MAX_CALIBRATION, calibration_set, p_values

    scores = np.random.default_rng(0).normal(size=3 * MAX_CALIBRATION)
    cal = calibration_set(scores)
    assert cal.size <= MAX_CALIBRATION and cal[-1] == scores.max()
    probe = np.array([0.0, 2.0, 3.5])
    exact = p_values(probe, np.sort(scores))
    assert np.abs(p_values(probe, cal, scores.size) - exact).max() < 2 / MAX_CALIBRATION


def test_severity_levels_follow_p_value_cutoffs_for_flagged_rows_only():
    from pynomaly_core.severity import SeverityCutoffs, severity

    cutoffs = SeverityCutoffs(medium=0.01, high=0.001, critical=0.0001)
    p = np.array([0.5, 0.05, 0.005, 0.0005, 0.00005, 0.00005])
    flagged = np.array([True, True, True, True, True, False])
    labels = severity(p, flagged, n_calibration=100_000, cutoffs=cutoffs)
    assert labels.tolist() == ["low", "low", "medium", "high", "critical", "none"]


def test_beyond_every_calibration_score_is_critical_on_small_calibration_sets():
    from pynomaly_core.severity import severity

    # n = 99: the smallest p-value is 1/100, above every default cut-off; the tiers widen to
    # what 99 calibration scores resolve (0, 1 or 2 of them at or above the row)
    labels = severity(np.array([0.01, 0.02, 0.03, 0.04]), np.ones(4, dtype=bool), n_calibration=99)
    assert labels.tolist() == ["critical", "high", "medium", "low"]


def test_severity_cutoffs_must_be_ordered():
    from pynomaly_core.severity import SeverityCutoffs

    with pytest.raises(ValueError, match="critical <= high <= medium"):
        SeverityCutoffs(medium=0.001, high=0.01)


def test_scored_p_values_match_calibration_and_survive_save_load(fitted, tmp_path):
    day = generate_day(dt.date(2026, 11, 6), SETTINGS)
    scored = fitted.score(day)
    assert scored["p_value"].between(0, 1).all()
    # more anomalous score, smaller p-value
    order = np.argsort(scored["score"].to_numpy())
    assert np.all(np.diff(scored["p_value"].to_numpy()[order]) <= 1e-12)
    loaded = load_object(fitted.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.score(day), scored)


def test_semi_supervised_detector_learns_from_the_labels():
    pytest.importorskip("xgboost")
    train = pd.concat(
        [generate_day(dt.date(2026, 11, d), SETTINGS) for d in range(1, 4)], ignore_index=True
    )
    model = AnomalyModel(FEATURES, "XGBOD", contamination=0.02).fit(train, train["is_anomaly"])
    day = generate_day(dt.date(2026, 11, 6), SETTINGS)
    assert roc_auc_score(day["is_anomaly"], model.score(day)["score"]) > 0.9


def test_semi_supervised_detector_without_labels_names_the_setting():
    train = generate_day(dt.date(2026, 11, 1), SETTINGS)
    with pytest.raises(ValueError, match="needs labels: set the feed's 'label' column"):
        AnomalyModel(FEATURES, "XGBOD").fit(train)


def _reference_score(model: AnomalyModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``AnomalyModel.score`` written out step by step: two searches, one JSON dump per anomaly."""
    from pynomaly_core.severity import p_values, severity

    X = model.preprocessor_.transform(frame)
    scores = model.detector_.decision_function(X)
    normalized = np.interp(scores, model.quantiles_, np.linspace(0, 1, len(model.quantiles_)))
    flags = scores > model.threshold_
    p = p_values(scores, model.calibration_, model.n_calibration_)
    names = model.preprocessor_.feature_names_out_
    numeric = np.array(["=" not in n for n in names])
    tops = np.full(len(frame), None, dtype=object)
    for row in np.where(flags)[0]:
        deviation = np.where(numeric, np.abs(X[row]), -np.inf)
        tops[row] = json.dumps([names[j] for j in np.argsort(-deviation)[:3]])
    return pd.DataFrame(
        {
            "score": scores,
            "normalized_score": normalized,
            "is_anomaly": flags,
            "p_value": p,
            "severity": severity(p, flags, model.n_calibration_, model.severity_cutoffs),
            "top_features": tops,
        },
        index=frame.index,
    )


def test_score_equals_the_step_by_step_reference_exactly(fitted):
    day = generate_day(dt.date(2026, 11, 6), SETTINGS).set_index("reading_id")
    scored = fitted.score(day)
    assert scored["is_anomaly"].any()
    pd.testing.assert_frame_equal(scored, _reference_score(fitted, day), check_exact=True)


def test_recalibrated_model_scores_equal_the_reference_exactly(fitted):
    model = AnomalyModel(FEATURES, "HBOS", contamination=0.02).fit(
        generate_day(dt.date(2026, 11, 1), SETTINGS)
    )
    holdout = generate_day(dt.date(2026, 11, 2), SETTINGS)
    model.calibrate(
        np.concatenate([model.detector_.decision_scores_, model.decision_function(holdout)])
    )
    day = generate_day(dt.date(2026, 11, 6), SETTINGS)
    pd.testing.assert_frame_equal(model.score(day), _reference_score(model, day), check_exact=True)


@pytest.mark.parametrize("seed", range(4))
def test_score_lookup_equals_interp_and_p_values_bit_for_bit(seed):
    from pynomaly_core.severity import ScoreLookup, calibration_set, p_values

    rng = np.random.default_rng(seed)
    # discrete scores (HBOS-like): ties in the calibration scores and in the quantiles
    train = np.round(rng.gamma(2.0, 1.0, 500), 1 + seed % 2)
    quantiles = np.quantile(train, np.linspace(0, 1, 101))
    levels = np.linspace(0, 1, 101)
    calibration = calibration_set(np.concatenate([train, rng.normal(2.0, 1.0, 50)]))
    n = calibration.size * (
        1 + seed % 2
    )  # also a reduced calibration set standing for a larger one
    knots = np.concatenate([quantiles, calibration])
    probes = np.concatenate(
        [
            knots,
            np.nextafter(knots, np.inf),
            np.nextafter(knots, -np.inf),
            rng.uniform(-1, 12, 2_000),
            [-np.inf, np.inf, np.nan, knots.min() - 1, knots.max() + 1],
        ]
    )
    normalized, p = ScoreLookup(quantiles, levels, calibration, n).lookup(probes)
    np.testing.assert_array_equal(normalized, np.interp(probes, quantiles, levels))
    np.testing.assert_array_equal(p, p_values(probes, calibration, n))


def test_score_lookup_with_one_calibration_score_and_constant_quantiles():
    from pynomaly_core.severity import ScoreLookup, p_values

    probes = np.array([-np.inf, 0.5, 1.0, 1.5, np.inf, np.nan])
    quantiles, levels = np.array([1.0, 1.0]), np.array([0.0, 1.0])
    normalized, p = ScoreLookup(quantiles, levels, np.array([1.0])).lookup(probes)
    np.testing.assert_array_equal(normalized, np.interp(probes, quantiles, levels))
    np.testing.assert_array_equal(p, p_values(probes, np.array([1.0])))
