"""Performance measurements and the degradation rule of pynomaly_core.evaluation.health."""

import dataclasses
import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import MonitoringSettings, parse_feed
from pynomaly_core.evaluation.health import (
    PerformanceVerdict,
    Verdict,
    alert_rate_test,
    baseline_champion,
    canary_recall,
    judge,
    labelled_metrics,
    measure_partition,
    performance_baseline,
)

SETTINGS = MonitoringSettings()


def test_labelled_metrics_on_a_perfect_and_a_random_ranking():
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    perfect = labelled_metrics(y, np.arange(100, dtype=float), k=10)
    assert perfect["average_precision"] == pytest.approx(1.0) and perfect["precision_at_10"] == 1.0
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
    flood = {
        **ok,
        "alert_rate_ratio": 8.0,
        "alert_rate_pvalue": 1e-30,
        "alert_rate": 0.08,
        "expected_alert_rate": 0.01,
    }
    verdict = judge(flood, base, SETTINGS)
    assert (
        verdict.severity == "error"
        and verdict.mode == "label_free"
        and "8.0x" in verdict.describe()
    )
    # a large ratio that is not significant (tiny day) is not judged
    assert (
        judge({**ok, "alert_rate_ratio": 8.0, "alert_rate_pvalue": 0.2}, base, SETTINGS).severity
        == "ok"
    )


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


def test_judge_returns_the_verdict_type_drift_shares():
    verdict = judge({"average_precision": 0.85}, {"average_precision": 0.9}, SETTINGS)
    assert isinstance(verdict, PerformanceVerdict) and isinstance(verdict, Verdict)
    assert verdict.passed and verdict.mode == "labels" and verdict.describe() == "within tolerance"


# ------------------------------------------------------------------ baseline and measurements
FEED = parse_feed(
    {
        "name": "telemetry",
        "source": {"kind": "demo"},
        "event_time": "event_time",
        "record_key": "reading_id",
        "label": "is_anomaly",
        "features": [
            {"name": "machine_type", "type": "category"},
            {"name": "rpm"},
            {"name": "temperature_c"},
            {"name": "vibration_mm_s"},
        ],
        "partitioning": {"start_date": "2026-11-01"},
        "detector": {"name": "KNN", "contamination": 0.03, "random_state": 0},
        "monitoring": {"canary_rows": 50, "min_labelled_anomalies": 3, "top_k": 20},
    }
)
NUMERIC = ["rpm", "temperature_c", "vibration_mm_s"]


@pytest.fixture(scope="module")
def window() -> pd.DataFrame:
    from pynomaly_core.data.demo import DemoSettings, generate_day

    settings = DemoSettings(machines=2, interval_minutes=15, anomaly_rate=0.03)
    return pd.concat(
        [generate_day(dt.date(2026, 11, d), settings) for d in (1, 2, 3)], ignore_index=True
    )


@pytest.fixture(scope="module")
def saved(window, tmp_path_factory):
    """A fitted champion saved as the lifecycle saves one, and its record."""
    from pynomaly_core.lifecycle import ChampionRecord
    from pynomaly_core.model import AnomalyModel

    model = AnomalyModel(FEED.features, detector="KNN", contamination=0.03, random_state=0).fit(
        window
    )
    path = model.save(tmp_path_factory.mktemp("champion") / "model")
    record = ChampionRecord(
        feed=FEED.name,
        version="3",
        path=str(path),
        detector="KNN",
        manifest_sha256=hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest(),
        threshold=float(model.threshold_),
        promoted=True,
        evaluation="labels",
        metrics={"average_precision": 0.8, "roc_auc": 0.95, "precision_at_n_true": 0.7},
    )
    return model, record


def test_performance_baseline_measures_the_holdout_and_records_the_model(window, saved):
    model, record = saved
    holdout = window.iloc[-100:].reset_index(drop=True)
    scores = np.asarray(model.decision_function(holdout), dtype=float)
    baseline = performance_baseline(record, model, window, holdout, scores, FEED, numeric=NUMERIC)
    assert (
        baseline["model_path"] == record.path
        and baseline["manifest_sha256"] == record.manifest_sha256
    )
    assert (baseline["version"], baseline["detector"], baseline["evaluation"]) == (
        "3",
        "KNN",
        "labels",
    )
    assert baseline["average_precision"] == 0.8 and baseline["roc_auc"] == 0.95
    assert baseline["alert_rate"] == pytest.approx(float(np.mean(scores > model.threshold_)))
    assert baseline["canary_recall"] == canary_recall(model, holdout, NUMERIC, 50)
    assert baseline["training_days"] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert (baseline["holdout_rows"], baseline["reference_rows"]) == (100, len(window))
    assert baseline["expected_alert_rate"] == 0.03
    # metrics on a synthetic evaluation set do not compare with a day's real labels
    synthetic = dataclasses.replace(record, evaluation="synthetic")
    unlabelled = performance_baseline(synthetic, model, window, holdout, scores, FEED, numeric=[])
    assert unlabelled["average_precision"] is None and unlabelled["roc_auc"] is None
    assert unlabelled["canary_recall"] is None


def test_baseline_champion_loads_the_version_the_baseline_was_measured_for(window, saved, tmp_path):
    model, record = saved
    path = model.save(tmp_path / "model")  # signed with this test's key
    record = dataclasses.replace(
        record,
        path=str(path),
        manifest_sha256=hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest(),
    )
    holdout = window.iloc[-100:].reset_index(drop=True)
    baseline = performance_baseline(
        record, model, window, holdout, model.decision_function(holdout), FEED, numeric=NUMERIC
    )
    again = baseline_champion(baseline)
    assert (again.feed, again.version, again.path, again.manifest_sha256) == (
        record.feed,
        record.version,
        record.path,
        record.manifest_sha256,
    )
    loaded = again.load()
    assert np.array_equal(loaded.decision_function(holdout), model.decision_function(holdout))
    from pynomaly_core.detectors.persistence import ModelIntegrityError

    with pytest.raises(ModelIntegrityError):  # a baseline pointing at a replaced model is refused
        baseline_champion({**baseline, "manifest_sha256": "0" * 64}).load()


def test_measure_partition_uses_labels_when_there_are_enough(window, saved):
    model, _ = saved
    day = window.iloc[-200:].reset_index(drop=True)
    scores = np.asarray(model.decision_function(day), dtype=float)
    labels = day["is_anomaly"].astype(float)
    health = {
        "alert_rate": 0.02,
        "expected_alert_rate": 0.03,
        "alert_rate_ratio": 2 / 3,
        "alert_rate_pvalue": 0.5,
        "score_ks": 0.1,
        "score_ks_pvalue": 0.3,
    }
    measured = measure_partition(
        model, day, scores, labels, NUMERIC, FEED.monitoring, score_health=health
    )
    assert measured.mode == "labels" and measured.labelled_rows == 200
    assert measured.labelled_anomalies == int(labels.sum()) >= 3
    assert (
        measured.values["average_precision"]
        == labelled_metrics(labels.to_numpy(int), scores, 20)["average_precision"]
    )
    assert measured.values["canary_recall"] == canary_recall(model, day, NUMERIC, 50)
    # the drift report's alert-rate and KS tests are taken over, in their order, after the measured ones
    assert list(measured.values)[-6:] == list(health) and all(
        measured.values[k] == v for k, v in health.items()
    )


def test_measure_partition_is_label_free_without_enough_labels(window, saved):
    model, _ = saved
    day = window.iloc[-200:].reset_index(drop=True)
    scores = np.asarray(model.decision_function(day), dtype=float)
    unknown = pd.Series(np.nan, index=day.index)
    unknown.iloc[:5] = 1.0  # five reviewed anomalies, but no reviewed normal row
    measured = measure_partition(model, day, scores, unknown, [], FEED.monitoring, score_health={})
    assert (
        measured.mode == "label_free"
        and measured.labelled_rows == 5
        and measured.labelled_anomalies == 5
    )
    assert measured.values == {}  # no numeric feature: no canaries


# ------------------------------------------------------------------ series canaries and the normal days
SERIES = parse_feed(
    {
        "name": "cpu",
        "source": {"kind": "demo"},
        "event_time": "ts",
        "record_key": "id",
        "features": [{"name": "value"}],
        "partitioning": {"start_date": "2026-01-01"},
        "detector": {"name": "IForest", "contamination": 0.01, "random_state": 0},
        "monitoring": {"canary_rows": 100},
    }
)


def series_day(rows: int = 288, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-01-05", periods=rows, freq="5min", tz="UTC")
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "ts": ts,
            "value": 50 + 5 * np.sin(2 * np.pi * ts.hour / 24) + rng.normal(0, 1, rows),
        }
    )


@pytest.fixture(scope="module")
def series_model():
    from pynomaly_core.model import AnomalyModel

    frame = pd.concat(
        [
            series_day(seed=s).assign(ts=lambda f, s=s: f["ts"] + pd.Timedelta(days=s))
            for s in range(3)
        ]
    )
    return AnomalyModel(
        SERIES.features, detector="IForest", contamination=0.01, random_state=0
    ).fit(frame)


def test_auto_canaries_are_series_for_time_ordered_or_one_dimensional_feeds():
    from pynomaly_core.evaluation.health import canaries_for

    assert canaries_for(SERIES, ["value"]).kind == "series"  # one numeric feature
    assert canaries_for(FEED, NUMERIC).kind == "tabular"  # three features, no entity, no derived
    with_entity = parse_feed(
        {**FEED.model_dump(mode="json", exclude_none=True), "entity": "machine_id"}
    )
    assert (
        canaries_for(with_entity, NUMERIC).kind == "series"
        and canaries_for(with_entity, NUMERIC).entity == "machine_id"
    )
    forced = FEED.model_copy(
        update={"monitoring": FEED.monitoring.model_copy(update={"canaries": "series"})}
    )
    assert canaries_for(forced, NUMERIC).kind == "series"
    assert canaries_for(SERIES, []) is None


def test_series_canaries_are_caught_by_a_working_detector_and_missed_by_a_blind_one(series_model):
    from pynomaly_core.evaluation.health import canaries_for, series_canary_recall

    day = series_day(seed=7)
    canaries = canaries_for(SERIES, ["value"])
    recall = canaries.recall(series_model, day, random_state=1)
    assert (
        0.0 < recall < 1.0
    )  # spikes and shifts are caught; stuck values and wrong-time values are not
    assert recall == series_canary_recall(
        series_model, day, event_time="ts", columns=["value"], n=100, random_state=1
    )
    original = series_model.threshold_  # a blind detector: nothing is above its threshold
    try:
        series_model.threshold_ = float("inf")
        assert canaries.recall(series_model, day, random_state=1) == 0.0
    finally:
        series_model.threshold_ = original
    assert np.isnan(
        canaries.recall(series_model, day.iloc[:2], random_state=1)
    )  # no event fits in two rows


def test_measure_partition_uses_the_feeds_canaries(series_model):
    from pynomaly_core.evaluation.health import canaries_for

    day = series_day(seed=8)
    scores = series_model.decision_function(day)
    canaries = canaries_for(SERIES, ["value"])
    measured = measure_partition(
        series_model,
        day,
        scores,
        pd.Series(np.nan, index=day.index),
        ["value"],
        SERIES.monitoring,
        score_health={},
        random_state=3,
        canaries=canaries,
    )
    assert measured.values["canary_recall"] == canaries.recall(series_model, day, random_state=3)


def ranges(alert_limit: float = 0.03, recall_limit: float = 0.4):
    from pynomaly_core.drift import NormalRange, NormalRanges

    return NormalRanges(
        {
            "alert_rate": NormalRange(
                "alert_rate", "alert rate", "above", alert_limit / 1.5, alert_limit, 0.95, 20
            ),
            "canary_recall": NormalRange(
                "canary_recall",
                "canary recall",
                "below",
                recall_limit * 1.5,
                recall_limit,
                0.95,
                20,
            ),
        },
        days=20,
    )


def test_judge_label_free_against_the_normal_days():
    base = {"canary_recall": 0.95, "average_precision": None}
    calm = judge(
        {
            "canary_recall": 0.5,
            "alert_rate": 0.025,
            "alert_rate_ratio": 2.5,
            "alert_rate_pvalue": 1e-6,
        },
        base,
        SETTINGS,
        normal=ranges(),
    )
    # the fixed rule would fail this day (recall 0.45 below the baseline); the feed's normal days say it is usual
    assert (
        judge({"canary_recall": 0.5, "alert_rate_ratio": 2.5}, base, SETTINGS).severity == "error"
    )
    assert calm.passed and calm.rule == "normal_days"
    assert calm.limits == {"canary_recall_limit": 0.4, "alert_rate_limit": 0.03}
    assert calm.describe().startswith(
        "within the normal range: canary recall 0.5 vs normal down to 0.6"
    )
    flood = judge({"canary_recall": 0.5, "alert_rate": 0.06}, base, SETTINGS, normal=ranges())
    assert flood.severity == "error" and flood.reasons == [
        (
            "alert rate 0.06 vs normal up to 0.02 (reference days p95 of 20), limit 0.03 "
            "(monitoring.normal_quantile, normal_margin)"
        )
    ]
    blind = judge({"canary_recall": 0.1, "alert_rate": 0.0}, base, SETTINGS, normal=ranges())
    assert (
        blind.severity == "error" and "canary recall 0.1 vs normal down to 0.6" in blind.describe()
    )
    # labels still decide when there are enough of them
    assert judge(
        {"average_precision": 0.85, "alert_rate": 0.5},
        {"average_precision": 0.9},
        SETTINGS,
        normal=ranges(),
    ).passed


def test_judge_falls_back_to_the_fixed_rule_and_says_why():
    from pynomaly_core.drift import NormalRanges

    fixed = NormalRanges.fixed(
        "only 2 measured reference day(s) < monitoring.normal_provisional_days=3"
    )
    verdict = judge({"canary_recall": 0.6}, {"canary_recall": 0.95}, SETTINGS, normal=fixed)
    assert verdict.severity == "error" and verdict.rule == "fixed"
    assert verdict.describe().endswith(
        "(fixed cut-offs: only 2 measured reference day(s) < monitoring.normal_provisional_days=3)"
    )


def test_normal_settings_are_validated_naming_the_key():
    from pynomaly_core.data.config import FeedConfigError

    data = {**SERIES.model_dump(mode="json", exclude_none=True)}
    for bad, key in (
        ({"normal_folds": 1}, "normal_folds"),
        ({"normal_quantile": 0.3}, "normal_quantile"),
        ({"normal_margin": 0.5}, "normal_margin"),
        ({"normal_min_days": 1}, "normal_min_days"),
        ({"normal_provisional_days": 1}, "normal_provisional_days"),
        ({"canaries": "spikes"}, "canaries"),
    ):
        with pytest.raises((FeedConfigError, ValueError), match=key):
            parse_feed({**data, "monitoring": {**data["monitoring"], **bad}})
