"""Performance measurements and the degradation rule of pynomaly_core.evaluation.health."""

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import MonitoringSettings
from pynomaly_core.evaluation.health import alert_rate_test, canary_recall, judge, labelled_metrics

SETTINGS = MonitoringSettings()


def test_labelled_metrics_on_a_perfect_and_a_random_ranking():
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    perfect = labelled_metrics(y, np.arange(100, dtype=float), k=10)
    assert perfect["average_precision"] == pytest.approx(1.0) and perfect["precision_at_k"] == 1.0
    rng = np.random.default_rng(0)
    noisy = labelled_metrics(y, rng.normal(size=100), k=10)
    assert noisy["average_precision"] < 0.5 and 0.2 < noisy["roc_auc"] < 0.8
    with pytest.raises(ValueError, match="both anomalies and normal"):
        labelled_metrics(np.zeros(5, int), np.arange(5.0), k=2)


def test_alert_rate_test_flags_a_flood_of_alerts_only():
    calm = alert_rate_test(11, 1000, 0.01)
    flood = alert_rate_test(100, 1000, 0.01)
    assert calm["alert_rate_pvalue"] > 0.5 and flood["alert_rate_pvalue"] < 1e-20
    assert flood["alert_rate_ratio"] == pytest.approx(10.0)


def test_judge_labels_warn_and_error_bands():
    base = {"average_precision": 0.9}
    assert judge({"average_precision": 0.85}, base, SETTINGS).severity == "ok"
    warn = judge({"average_precision": 0.75}, base, SETTINGS)
    assert warn.severity == "warn" and "ap_tolerance_warn" in warn.describe()
    assert judge({"average_precision": 0.5}, base, SETTINGS).severity == "error"


def test_judge_label_free_on_canaries_and_alert_rate():
    base = {"canary_recall": 0.95, "average_precision": None}
    ok = {"canary_recall": 0.93, "alert_rate_ratio": 1.1, "alert_rate_pvalue": 0.4}
    assert judge(ok, base, SETTINGS).severity == "ok"
    blind = {**ok, "canary_recall": 0.6}
    assert judge(blind, base, SETTINGS).severity == "error"
    flood = {**ok, "alert_rate_ratio": 8.0, "alert_rate_pvalue": 1e-30, "alert_rate": 0.08, "expected_alert_rate": 0.01}
    verdict = judge(flood, base, SETTINGS)
    assert verdict.severity == "error" and verdict.mode == "label_free" and "8.0x" in verdict.describe()
    # a large ratio that is not significant (tiny day) is not judged
    assert judge({**ok, "alert_rate_ratio": 8.0, "alert_rate_pvalue": 0.2}, base, SETTINGS).severity == "ok"


def test_canary_recall_separates_a_working_detector_from_a_blind_one():
    from pynomaly_core.data.config import FeatureSpec
    from pynomaly_core.model import AnomalyModel

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    frame["c"] = frame["a"] + 0.1 * rng.normal(size=600)
    features = [FeatureSpec(name=c, type="float") for c in frame.columns]
    model = AnomalyModel(features, detector="KNN", contamination=0.02).fit(frame)
    working = canary_recall(model, frame, list(frame.columns), 200, random_state=0)
    assert working > 0.6
    model.threshold_ = float("inf")  # a detector that never flags anything
    assert canary_recall(model, frame, list(frame.columns), 200, random_state=0) == 0.0
