"""Drift of a scored partition against a champion's reference, with real Evidently."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import MonitoringSettings
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.drift import (
    HEALTH_KEYS,
    MANIFEST_NAME,
    DriftError,
    DriftReference,
    DriftVerdict,
    build_normal_days,
    build_reference,
    drift_report,
    evidently_drift,
    health_measurements,
    judge,
    parse_snapshot,
    psi,
)
from pynomaly_core.evaluation.health import Verdict

NUMERIC = ["rpm", "power_kw", "temperature_c", "vibration_mm_s", "pressure_bar"]
CATEGORICAL = ["machine_type"]
DRIFTING = [
    "temperature_c",
    "vibration_mm_s",
]  # the demo feed runs hotter and vibrates more from 2026-11-12
# the embedded demo feed (pynomaly_assets/feeds/demo_telemetry.yaml)
DEMO = DemoSettings(
    seed=7, machines=6, interval_minutes=5, anomaly_rate=0.012, drift_date=dt.date(2026, 11, 12)
)
RATE = 0.012


def days(first: int, last: int, settings: DemoSettings = DEMO) -> pd.DataFrame:
    return pd.concat(
        [generate_day(dt.date(2026, 11, d), settings) for d in range(first, last + 1)],
        ignore_index=True,
    )


def pseudo_scores(frame: pd.DataFrame) -> np.ndarray:
    """A stand-in anomaly score: distance from the reference centre (it drifts when the data does)."""
    centre = {"temperature_c": 55.0, "vibration_mm_s": 2.4, "pressure_bar": 6.4}
    return sum(((frame[c] - m) / m) ** 2 for c, m in centre.items()).to_numpy()


def flags_at(rate: float, rows: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random(rows) < rate


@pytest.fixture(scope="module")
def reference_frame() -> pd.DataFrame:
    return days(1, 4)


@pytest.fixture(scope="module")
def reference(reference_frame) -> DriftReference:
    return build_reference(
        reference_frame, NUMERIC, CATEGORICAL, pseudo_scores(reference_frame), RATE
    )


def report(reference: DriftReference, frame: pd.DataFrame, **kwargs):
    kwargs.setdefault("current_scores", pseudo_scores(frame))
    kwargs.setdefault("current_flags", flags_at(RATE, len(frame)))
    return drift_report(reference, frame, **kwargs)


# each report renders Evidently's plots (about a second of CPU): the common ones are shared
@pytest.fixture(scope="module")
def steady(reference):
    """A day before the drift, scores and flags as usual."""
    return report(reference, days(8, 8))


@pytest.fixture(scope="module")
def drifted(reference, tmp_path_factory):
    """A day after the drift, with the HTML report written."""
    return report(
        reference,
        days(13, 13),
        html_path=tmp_path_factory.mktemp("html") / "reports" / "2026-11-13.html",
    )


@pytest.fixture(scope="module")
def alarming(reference):
    """A day before the drift whose scores tripled and whose detector flags ten times the expected rate."""
    day = days(8, 8)
    return report(
        reference,
        day,
        current_scores=3 * pseudo_scores(day),
        current_flags=flags_at(10 * RATE, len(day)),
    )


# ------------------------------------------------------------------ per-column drift
def test_same_distribution_is_not_drifted(steady):
    result = steady
    assert result.drift_share <= 1 / 6
    assert not result.dataset_drift
    assert (result.columns["psi"] < 0.1).all(), result.columns
    assert list(result.columns["column"]) == NUMERIC + CATEGORICAL


def test_shifted_columns_are_drifted_with_high_psi_and_the_others_are_not(drifted):
    result = drifted
    by_column = result.columns.set_index("column")
    assert sorted(result.drifted_columns) == sorted(DRIFTING)
    assert (by_column.loc[DRIFTING, "psi"] > 0.5).all()
    steady = [c for c in NUMERIC + CATEGORICAL if c not in DRIFTING]
    assert (by_column.loc[steady, "psi"] < 0.1).all()
    assert result.drift_share == pytest.approx(2 / 6)
    assert not result.dataset_drift  # 2 of 6 columns is below the 0.5 share
    # Evidently's own defaults for > 1000 reference rows
    assert set(by_column.loc[NUMERIC, "stattest"]) == {"Wasserstein distance (normed)"}
    assert by_column.loc["machine_type", "stattest"] == "Jensen-Shannon distance"
    assert (by_column["threshold"] == 0.1).all()


def test_a_categorical_shift_is_drifted_and_unseen_categories_count_in_psi(reference):
    day = days(8, 8)
    mostly_presses = day[
        (day["machine_type"] == "press") | (np.arange(len(day)) % 5 == 0)
    ].reset_index(drop=True)
    result = report(reference, mostly_presses)
    row = result.columns.set_index("column").loc["machine_type"]
    assert row["drifted"] and row["kind"] == "categorical"
    assert row["psi"] > 0.25

    renamed = day.copy()
    renamed["machine_type"] = renamed["machine_type"].replace(
        {"mill": "grinder"}
    )  # a category never seen
    unseen = report(reference, renamed).columns.set_index("column").loc["machine_type"]
    assert unseen["psi"] > 1.0


def test_a_constant_reference_column_degenerates_to_below_at_above_buckets():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"level": rng.normal(size=3000), "flat": 5.0})
    reference = build_reference(frame, ["level", "flat"], [], rng.normal(size=3000), 0.05)
    assert reference.edges["flat"].tolist() == [5.0, np.nextafter(5.0, np.inf)]
    assert reference.proportions["flat"].tolist() == [
        0.0,
        1.0,
        0.0,
        0.0,
    ]  # below, at, above, missing
    same = frame.assign(level=rng.normal(size=3000))
    kwargs = {"current_scores": rng.normal(size=3000), "current_flags": flags_at(0.05, 3000)}
    steady = drift_report(reference, same, **kwargs).columns.set_index("column")
    assert steady.loc["flat", "psi"] == 0.0 and not steady.loc["flat", "drifted"]
    moved = drift_report(reference, same.assign(flat=6.0), **kwargs).columns.set_index("column")
    assert moved.loc["flat", "psi"] > 5 and moved.loc["flat", "drifted"]


# ------------------------------------------------------------------ scores and alert rate
def test_score_psi_and_ks_react_to_shifted_scores(steady, alarming):
    assert steady.score_psi < 0.1 and steady.score_ks_pvalue > 0.01
    assert alarming.score_psi > 0.5 and alarming.score_ks > 0.3 and alarming.score_ks_pvalue < 1e-10


def test_alert_rate_ten_times_the_expected_rate_has_a_tiny_binomial_p_value(steady, alarming):
    assert steady.alert_rate_pvalue > 0.01 and steady.alert_rate_ratio == pytest.approx(1, rel=0.5)
    assert alarming.alert_rate_ratio == pytest.approx(10, rel=0.2)
    assert alarming.alert_rate == alarming.alerts / alarming.rows
    assert alarming.alert_rate_pvalue < 1e-30


def test_summary_is_plain_json(drifted):
    doc = json.loads(json.dumps(drifted.summary(), allow_nan=False))
    assert doc["rows"] == 1728 and doc["html_path"] == str(drifted.html_path)
    assert (
        doc["drift_share"] == drifted.drift_share
        and doc["alert_rate_pvalue"] == drifted.alert_rate_pvalue
    )
    assert [c["column"] for c in doc["columns"] if c["drifted"]] == DRIFTING
    assert {"statistic", "threshold", "stattest", "psi", "kind"} <= set(doc["columns"][0])


# ------------------------------------------------------------------ the verdict
# warn at 30 % of features drifted, error at 50 %, error at an anomaly-score PSI above 0.25
SETTINGS = MonitoringSettings(drift_share_warn=0.3, drift_share_error=0.5, score_psi_error=0.25)


def judged(
    result, share: float, score_psi: float, *, in_training_window: bool = False
) -> DriftVerdict:
    changed = dataclasses.replace(result, drift_share=share, score_psi=score_psi)
    return judge(changed, SETTINGS, in_training_window=in_training_window)


def test_judge_passes_a_calm_day_and_says_what_it_measured(steady):
    verdict = judged(steady, 1 / 6, 0.04)
    assert (
        isinstance(verdict, Verdict)
        and verdict.passed
        and verdict.severity == "ok"
        and not verdict.reasons
    )
    assert verdict.describe() == "17% of features drifted, score PSI 0.040"


def test_judge_warns_from_drift_share_warn_and_errs_from_drift_share_error(steady):
    assert judged(steady, 0.29, 0.0).severity == "ok"
    warn = judged(steady, 0.3, 0.0)  # the bound itself warns
    assert warn.severity == "warn" and not warn.passed
    assert warn.describe() == "30% of features drifted (monitoring.drift_share_warn=0.3)"
    error = judged(steady, 0.5, 0.0)
    assert error.severity == "error" and error.reasons == [
        "50% of features drifted (monitoring.drift_share_error=0.5)"
    ]


def test_judge_errs_on_score_psi_above_score_psi_error(steady):
    assert judged(steady, 0.0, 0.25).severity == "ok"  # the bound itself passes
    error = judged(steady, 0.0, 0.3)
    assert (
        error.severity == "error"
        and error.describe() == "anomaly-score PSI 0.300 > monitoring.score_psi_error=0.25"
    )
    both = judged(
        steady, 0.35, 0.3
    )  # a warning share and a score error: an error with both reasons
    assert (
        both.severity == "error"
        and len(both.reasons) == 2
        and "drift_share_warn" in both.reasons[0]
    )


def test_judge_does_not_judge_score_drift_on_the_champions_training_days(steady):
    in_sample = judged(steady, 0.0, 0.9, in_training_window=True)
    assert in_sample.passed
    assert (
        in_sample.describe()
        == "0% of features drifted, score PSI 0.900 (a training day of this champion: "
        "score drift not judged)"
    )
    # feature drift is judged on those days all the same
    drifted = judged(steady, 0.6, 0.9, in_training_window=True)
    assert drifted.severity == "error" and len(drifted.reasons) == 1
    assert drifted.describe().endswith("(a training day of this champion: score drift not judged)")


def test_judge_on_a_real_drifted_day(drifted):
    # two of six features drifted (a warning), and the hotter machines score higher (an error)
    verdict = judge(drifted, SETTINGS, in_training_window=False)
    assert verdict.severity == "error" and verdict.drift_share == pytest.approx(2 / 6)
    assert "drift_share_warn" in verdict.reasons[0] and "score_psi_error" in verdict.reasons[1]
    assert judge(drifted, SETTINGS, in_training_window=True).severity == "warn"


def test_health_measurements_are_the_reports_alert_rate_and_score_ks_tests(alarming):
    summary = json.loads(json.dumps(alarming.summary()))  # as the drift_report asset stores it
    health = health_measurements(summary)
    assert list(health) == list(HEALTH_KEYS)
    assert health == {k: getattr(alarming, k) for k in HEALTH_KEYS}
    assert "score_ks" not in health_measurements(
        {**summary, "score_ks": None}
    )  # not finite: not judged
    with pytest.raises(DriftError, match="alert_rate_pvalue"):
        health_measurements({k: v for k, v in summary.items() if k != "alert_rate_pvalue"})


# ------------------------------------------------------------------ persistence and HTML
def test_reference_round_trips_through_save_and_load(reference, tmp_path):
    path = reference.save(tmp_path / "drift")
    assert path == tmp_path / "drift" / MANIFEST_NAME
    loaded = DriftReference.load(tmp_path / "drift")
    assert loaded == reference
    pd.testing.assert_frame_equal(loaded.sample, reference.sample)
    assert not any(p.suffix == ".pkl" for p in path.parent.iterdir())
    before = sorted(p.name for p in path.parent.iterdir())
    reference.save(tmp_path / "drift")  # idempotent: the same files again
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_saving_another_reference_replaces_the_files_of_the_first(reference, tmp_path):
    reference.save(tmp_path)
    other = build_reference(days(5, 5), NUMERIC, CATEGORICAL, np.arange(1728.0), RATE)
    other.save(tmp_path)
    assert DriftReference.load(tmp_path) == other
    assert len(list(tmp_path.glob("*.parquet"))) == 2


def test_load_names_the_directory_or_file_when_missing_or_corrupt(reference, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        DriftReference.load(tmp_path / "nowhere")
    reference.save(tmp_path / "ok")
    sample = next((tmp_path / "ok").glob("drift_reference_sample-*.parquet"))
    sample.write_bytes(sample.read_bytes()[:-10])
    with pytest.raises(DriftError, match=sample.name):
        DriftReference.load(tmp_path / "ok")
    (tmp_path / "ok" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DriftError, match=f"{MANIFEST_NAME}: corrupt"):
        DriftReference.load(tmp_path / "ok")


def test_html_report_is_written_with_evidently_markup(drifted):
    target = drifted.html_path
    assert target.name == "2026-11-13.html"
    html = target.read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "Drifted Columns" in html and "Wasserstein distance (normed)" in html
    assert all(column in html for column in NUMERIC + CATEGORICAL)
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left


# ------------------------------------------------------------------ sampling
def test_sampled_report_gives_the_full_data_evidently_decisions_on_a_200k_row_partition():
    big = DemoSettings(
        seed=7, machines=24, interval_minutes=1, anomaly_rate=0.0, drift_date=dt.date(2026, 11, 12)
    )
    reference_frame = days(1, 1, big)
    partition = days(12, 17, big).iloc[:200_000].reset_index(drop=True)
    reference = build_reference(
        reference_frame, NUMERIC, CATEGORICAL, pseudo_scores(reference_frame), RATE
    )
    ours = report(reference, partition)
    assert (
        ours.rows == 200_000 and ours.sampled_rows == 20_000 and ours.reference_sampled_rows == 5000
    )
    full, _ = evidently_drift(reference_frame, partition, NUMERIC, CATEGORICAL)
    assert ours.columns["drifted"].tolist() == full["drifted"].tolist()
    assert sorted(ours.drifted_columns) == sorted(DRIFTING)


# ------------------------------------------------------------------ errors
def test_a_missing_feature_column_is_named(reference):
    day = days(8, 8)
    with pytest.raises(DriftError, match="current partition lacks feature column.*'pressure_bar'"):
        drift_report(
            reference,
            day.drop(columns="pressure_bar"),
            pseudo_scores(day),
            flags_at(RATE, len(day)),
        )


def test_an_all_missing_column_is_named(reference):
    day = days(8, 8).assign(power_kw=np.nan)
    with pytest.raises(
        DriftError, match="'power_kw' of the current partition has only missing values"
    ):
        report(reference, day)
    with pytest.raises(DriftError, match="'rpm' of the reference frame has no finite values"):
        build_reference(day.assign(rpm=np.nan), NUMERIC, CATEGORICAL, np.zeros(len(day)), RATE)


def test_an_empty_partition_and_misaligned_scores_raise(reference):
    day = days(8, 8)
    with pytest.raises(DriftError, match="empty"):
        drift_report(reference, day.iloc[:0], np.empty(0), np.empty(0, dtype=bool))
    with pytest.raises(
        DriftError, match="current_scores has 10 values but the current partition has 1728 rows"
    ):
        drift_report(reference, day, np.zeros(10), flags_at(RATE, len(day)))


def test_an_unreadable_evidently_result_names_the_column():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    columns, snapshot = evidently_drift(frame, frame, ["a", "b"], [])
    assert columns["column"].tolist() == ["a", "b"] and not columns["drifted"].any()
    doc = snapshot.dict()
    doc["tests"] = [t for t in doc["tests"] if t["name"] != "Value Drift for column b"]
    with pytest.raises(DriftError, match="feature column 'b'"):
        parse_snapshot(doc, ["a", "b"])
    with pytest.raises(DriftError, match="no ValueDrift result for feature column 'c'"):
        parse_snapshot(doc, ["a", "c"])


def test_psi_is_zero_for_equal_shares_and_finite_for_empty_buckets():
    assert psi(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.5, 0.0])) == 0.0
    assert 0 < psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) < 20


def test_module_imports_without_evidently_and_a_missing_evidently_names_the_extra():
    code = """
        import sys
        import numpy as np, pandas as pd
        import pynomaly_core.drift as drift
        assert "evidently" not in sys.modules
        sys.modules["evidently"] = None  # as if not installed
        frame = pd.DataFrame({"x": np.arange(100.0)})
        reference = drift.build_reference(frame, ["x"], [], np.arange(100.0), 0.1)
        try:
            drift.drift_report(reference, frame, np.arange(100.0), np.zeros(100, dtype=bool))
        except ImportError as exc:
            print(exc)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'pynomaly[monitoring]'" in done.stdout


# ------------------------------------------------------------------ the feed's normal days
SERIES_FEED = {
    "name": "series",
    "source": {"kind": "demo"},
    "event_time": "ts",
    "record_key": "id",
    "features": [{"name": "value", "type": "float"}],
    "partitioning": {"start_date": "2026-01-01"},
    "detector": {
        "name": "IForest",
        "contamination": 0.01,
        "random_state": 0,
        "params": {"n_estimators": 50},
    },
}


def moving_series(
    n_days: int, first: str = "2026-01-05", *, seed: int = 0, shift: float = 0.0
) -> pd.DataFrame:
    """A 10-minute series whose level wanders from day to day, with a daily cycle and quieter weekends."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(first, periods=144 * n_days, freq="10min", tz="UTC")
    level = np.repeat(50 + np.cumsum(rng.normal(0, 1.5, n_days)), 144)
    weekend = np.where(ts.dayofweek >= 5, -6.0, 0.0)
    value = (
        level + weekend + 5 * np.sin(2 * np.pi * ts.hour / 24) + rng.normal(0, 1, len(ts)) + shift
    )
    return pd.DataFrame({"id": np.arange(len(ts)), "ts": ts, "value": value})


@pytest.fixture(scope="module")
def series_feed():
    from pynomaly_core.data.config import parse_feed

    return parse_feed(SERIES_FEED)


@pytest.fixture(scope="module")
def profile(series_feed):
    """The normal-day profile of a champion fitted on 14 days of the moving series."""
    from pynomaly_core.evaluation.health import canaries_for
    from pynomaly_core.model import AnomalyModel

    window = moving_series(14)
    model = AnomalyModel(
        series_feed.features,
        detector="IForest",
        contamination=0.01,
        random_state=0,
        params={"n_estimators": 50},
    ).fit(window)
    normal = build_normal_days(
        window,
        series_feed,
        model,
        numeric=["value"],
        categorical=[],
        canaries=canaries_for(series_feed, ["value"]),
    )
    reference = build_reference(window, ["value"], [], model.decision_function(window), 0.01)
    return window, model, normal, reference


def test_every_reference_day_is_measured_out_of_sample(profile):
    window, _, normal, _ = profile
    assert (
        normal.built and normal.reason is None and normal.folds == 5 and normal.canaries == "series"
    )
    assert list(normal.table["day"]) == sorted(window["ts"].dt.strftime("%Y-%m-%d").unique())
    assert list(normal.table.columns) == [
        "day",
        "rows",
        "fold",
        "psi:value",
        "score_psi",
        "score_ks",
        "alert_rate",
        "canary_recall",
    ]
    # five contiguous blocks of days, each scored by a model fitted on the others
    assert list(normal.table["fold"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    # the days differ in level from one another: their PSI against the other days is far from zero
    assert (normal.table["psi:value"] > 0.1).mean() > 0.5
    assert (
        normal.scores.min() >= 0.0
        and normal.scores.max() <= 1.0
        and len(normal.scores) == len(window)
    )


def test_ranges_are_the_reference_days_quantile_times_the_margin_with_floors(profile, series_feed):
    _, _, normal, _ = profile
    settings = series_feed.monitoring
    ranges = normal.ranges(settings)
    assert ranges.calibrated and ranges.days == 14
    psi_range = ranges.get("psi:value")
    expected = np.quantile(normal.table["psi:value"], 0.95)
    assert psi_range.normal == pytest.approx(expected) and psi_range.limit == pytest.approx(
        max(1.5 * expected, 0.1)
    )
    alert = ranges.get("alert_rate")
    assert alert.limit >= 2 * 0.01  # never below twice the contamination
    recall = ranges.get("canary_recall")
    assert recall.direction == "below"
    assert recall.limit == pytest.approx(
        min(recall.normal / 1.5, recall.normal - settings.canary_recall_tolerance)
    )
    stricter = normal.ranges(
        settings.model_copy(update={"normal_margin": 3.0})
    )  # settings apply without a retrain
    assert stricter.get("psi:value").limit == pytest.approx(max(3 * expected, 0.1))
    assert set(ranges.limits()) == {
        "psi_value_limit",
        "score_psi_limit",
        "alert_rate_limit",
        "canary_recall_limit",
    }


def test_a_normal_new_day_passes_and_a_shifted_one_fails_against_the_normal_days(
    profile, series_feed
):
    _, model, normal, reference = profile
    settings = series_feed.monitoring
    ranges = normal.ranges(settings)
    days_after = (
        moving_series(16, seed=0).iloc[144 * 14 :].reset_index(drop=True)
    )  # the series goes on
    from pynomaly_core.drift import normalized_scores

    def judged(frame):
        raw = model.decision_function(frame)
        result = drift_report(
            reference,
            frame,
            raw,
            raw > model.threshold_,
            normal=normal,
            current_normalized=normalized_scores(model, raw),
        )
        assert result.score_reference == "normal_days"
        return result, judge(result, settings, in_training_window=False, normal=ranges)

    result, calm = judged(days_after.iloc[:144])
    assert calm.passed and calm.rule == "normal_days", calm.describe()
    assert (
        result.drift_share == 1.0
    )  # Evidently's fixed thresholds call the moved level drifted ...
    assert (
        judge(result, settings, in_training_window=False).severity == "error"
    )  # ... and the fixed rule fails it
    assert "vs normal up to" in calm.describe() and "reported, not judged" in calm.describe()
    _, shifted = judged(days_after.iloc[:144].assign(value=lambda f: f["value"] + 40))
    assert (
        shifted.severity == "error"
        and shifted.abnormal_features == ["value"]
        and shifted.abnormal_share == 1.0
    )
    assert "PSI of value" in shifted.describe() and "reference days p95 of 14" in shifted.describe()
    assert {"psi_value_limit", "score_psi_limit"} == set(shifted.limits)


def test_too_few_reference_days_fall_back_to_the_fixed_cut_offs_and_say_why(series_feed, profile):
    _, model, _, _ = profile
    from pynomaly_core.drift import NormalRanges

    short = build_normal_days(
        moving_series(2), series_feed, model, numeric=["value"], categorical=[], canaries=None
    )
    assert not short.built and "2 day(s) < monitoring.normal_provisional_days=3" in short.reason
    ranges = short.ranges(series_feed.monitoring)
    assert not ranges.calibrated and ranges.get("psi:value") is None
    off = series_feed.monitoring.model_copy(update={"normal_folds": 0})
    assert (
        "normal_folds is 0"
        in build_normal_days(
            moving_series(8),
            series_feed.model_copy(update={"monitoring": off}),
            model,
            numeric=["value"],
            categorical=[],
            canaries=None,
        ).reason
    )
    verdict = judge(
        dataclasses.replace(_any_result(profile), drift_share=0.0, score_psi=0.4),
        series_feed.monitoring,
        in_training_window=False,
        normal=ranges,
    )
    assert verdict.rule == "fixed" and verdict.severity == "error"
    assert verdict.describe().endswith(f"(fixed cut-offs: {short.reason})")
    assert isinstance(NormalRanges.fixed("x"), NormalRanges)


def test_a_young_feed_is_judged_against_a_provisional_profile_of_its_few_days(series_feed, profile):
    """Fewer days than normal_min_days (7), at least normal_provisional_days (3): the limits come
    from the days there are, each statistic's normal value the extreme day, and the check says so."""
    _, model, _, _ = profile
    window = moving_series(5)
    young = build_normal_days(
        window, series_feed, model, numeric=["value"], categorical=[], canaries=None
    )
    assert young.built and len(young.table) == 5
    settings = series_feed.monitoring
    ranges = young.ranges(settings)
    assert ranges.calibrated and ranges.provisional and ranges.days == 5
    assert ranges.describe() == "provisional (5 days < monitoring.normal_min_days 7)"
    psi_range = ranges.get("psi:value")
    assert psi_range is not None and psi_range.provisional
    largest = float(young.table["psi:value"].max())
    assert psi_range.normal == pytest.approx(largest)
    assert psi_range.limit == pytest.approx(max(largest * settings.normal_margin, 0.1))
    assert "largest of 5 reference days, provisional" in psi_range.describe(0.2)
    # the same days under the old rule (provisional days = normal_min_days): the fixed cut-offs
    strict = settings.model_copy(update={"normal_provisional_days": settings.normal_min_days})
    assert not young.ranges(strict).calibrated
    assert "monitoring.normal_provisional_days=7" in (young.ranges(strict).reason or "")
    # with two weeks the rule is the quantile, not the extreme day
    full = profile[2].ranges(settings)
    assert not full.provisional and full.describe() == "built"
    assert full.get("psi:value").quantile == settings.normal_quantile


def _any_result(profile):
    window, model, _, reference = profile
    day = window.iloc[:144].reset_index(drop=True)
    raw = model.decision_function(day)
    return drift_report(reference, day, raw, raw > model.threshold_)


def test_judge_against_normal_ranges_warns_and_errs_on_the_share_of_abnormal_features(steady):
    from pynomaly_core.drift import NormalRange, NormalRanges

    def psi_range(column: str, limit: float) -> NormalRange:
        return NormalRange(
            f"psi:{column}", f"PSI of {column}", "above", limit / 1.5, limit, 0.95, 20
        )

    columns = list(steady.columns["column"])
    ranges = {f"psi:{c}": psi_range(c, 10.0) for c in columns}
    ranges["score_psi"] = NormalRange("score_psi", "anomaly-score PSI", "above", 0.2, 0.3, 0.95, 20)
    calm = judge(steady, SETTINGS, in_training_window=False, normal=NormalRanges(ranges, days=20))
    assert calm.passed and calm.abnormal_share == 0.0
    tight = {
        **ranges,
        **{f"psi:{c}": psi_range(c, 1e-9) for c in columns[:2]},
    }  # 2 of 6 past: a warning
    warn = judge(steady, SETTINGS, in_training_window=False, normal=NormalRanges(tight, days=20))
    assert warn.severity == "warn" and warn.abnormal_features == columns[:2]
    assert (
        "2 of 6 feature(s) past their normal PSI (33% >= monitoring.drift_share_warn=0.3)"
        in warn.describe()
    )
    scored = dataclasses.replace(steady, score_psi=0.5)
    error = judge(scored, SETTINGS, in_training_window=False, normal=NormalRanges(ranges, days=20))
    assert error.severity == "error"
    assert error.reasons == [
        "anomaly-score PSI 0.5 vs normal up to 0.2 (reference days p95 of 20), limit 0.3"
    ]
    assert judge(
        scored, SETTINGS, in_training_window=True, normal=NormalRanges(ranges, days=20)
    ).passed


def test_normal_days_round_trip_and_name_the_file_when_corrupt(profile, tmp_path):
    from pynomaly_core.drift import NormalDays
    from pynomaly_core.drift.normal import NORMAL_MANIFEST

    _, _, normal, _ = profile
    assert NormalDays.load(tmp_path / "none") is None  # a reference from before profiles existed
    normal.save(tmp_path)
    loaded = NormalDays.load(tmp_path)
    pd.testing.assert_frame_equal(loaded.table, normal.table)
    assert (
        np.array_equal(loaded.scores, normal.scores)
        and loaded.features == ["value"]
        and loaded.folds == 5
    )
    table = next(tmp_path.glob("normal_days-*.parquet"))
    table.write_bytes(table.read_bytes()[:-5])
    with pytest.raises(DriftError, match=table.name):
        NormalDays.load(tmp_path)
    (tmp_path / NORMAL_MANIFEST).write_text("[]")
    with pytest.raises(DriftError, match="normal-day profile format"):
        NormalDays.load(tmp_path)


def test_a_profile_needs_the_normalized_scores_of_the_day(profile):
    window, model, normal, reference = profile
    day = window.iloc[:144].reset_index(drop=True)
    raw = model.decision_function(day)
    with pytest.raises(DriftError, match="current_normalized"):
        drift_report(reference, day, raw, raw > model.threshold_, normal=normal)
