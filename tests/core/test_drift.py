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
DRIFTING = ["temperature_c", "vibration_mm_s"]  # the demo feed runs hotter and vibrates more from 2026-11-12
# the embedded demo feed (pynomaly_assets/feeds/demo_telemetry.yaml)
DEMO = DemoSettings(seed=7, machines=6, interval_minutes=5, anomaly_rate=0.012, drift_date=dt.date(2026, 11, 12))
RATE = 0.012


def days(first: int, last: int, settings: DemoSettings = DEMO) -> pd.DataFrame:
    return pd.concat([generate_day(dt.date(2026, 11, d), settings) for d in range(first, last + 1)],
                     ignore_index=True)


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
    return build_reference(reference_frame, NUMERIC, CATEGORICAL, pseudo_scores(reference_frame), RATE)


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
    return report(reference, days(13, 13), html_path=tmp_path_factory.mktemp("html") / "reports" / "2026-11-13.html")


@pytest.fixture(scope="module")
def alarming(reference):
    """A day before the drift whose scores tripled and whose detector flags ten times the expected rate."""
    day = days(8, 8)
    return report(reference, day, current_scores=3 * pseudo_scores(day), current_flags=flags_at(10 * RATE, len(day)))


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
    mostly_presses = day[(day["machine_type"] == "press") | (np.arange(len(day)) % 5 == 0)].reset_index(drop=True)
    result = report(reference, mostly_presses)
    row = result.columns.set_index("column").loc["machine_type"]
    assert row["drifted"] and row["kind"] == "categorical"
    assert row["psi"] > 0.25

    renamed = day.copy()
    renamed["machine_type"] = renamed["machine_type"].replace({"mill": "grinder"})  # a category never seen
    unseen = report(reference, renamed).columns.set_index("column").loc["machine_type"]
    assert unseen["psi"] > 1.0


def test_a_constant_reference_column_degenerates_to_below_at_above_buckets():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"level": rng.normal(size=3000), "flat": 5.0})
    reference = build_reference(frame, ["level", "flat"], [], rng.normal(size=3000), 0.05)
    assert reference.edges["flat"].tolist() == [5.0, np.nextafter(5.0, np.inf)]
    assert reference.proportions["flat"].tolist() == [0.0, 1.0, 0.0, 0.0]  # below, at, above, missing
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
    assert doc["drift_share"] == drifted.drift_share and doc["alert_rate_pvalue"] == drifted.alert_rate_pvalue
    assert [c["column"] for c in doc["columns"] if c["drifted"]] == DRIFTING
    assert {"statistic", "threshold", "stattest", "psi", "kind"} <= set(doc["columns"][0])


# ------------------------------------------------------------------ the verdict
# warn at 30 % of features drifted, error at 50 %, error at an anomaly-score PSI above 0.25
SETTINGS = MonitoringSettings(drift_share_warn=0.3, drift_share_error=0.5, score_psi_error=0.25)


def judged(result, share: float, score_psi: float, *, in_training_window: bool = False) -> DriftVerdict:
    changed = dataclasses.replace(result, drift_share=share, score_psi=score_psi)
    return judge(changed, SETTINGS, in_training_window=in_training_window)


def test_judge_passes_a_calm_day_and_says_what_it_measured(steady):
    verdict = judged(steady, 1 / 6, 0.04)
    assert isinstance(verdict, Verdict) and verdict.passed and verdict.severity == "ok" and not verdict.reasons
    assert verdict.describe() == "17% of features drifted, score PSI 0.040"


def test_judge_warns_from_drift_share_warn_and_errs_from_drift_share_error(steady):
    assert judged(steady, 0.29, 0.0).severity == "ok"
    warn = judged(steady, 0.3, 0.0)  # the bound itself warns
    assert warn.severity == "warn" and not warn.passed
    assert warn.describe() == "30% of features drifted (monitoring.drift_share_warn=0.3)"
    error = judged(steady, 0.5, 0.0)
    assert error.severity == "error" and error.reasons == ["50% of features drifted (monitoring.drift_share_error=0.5)"]


def test_judge_errs_on_score_psi_above_score_psi_error(steady):
    assert judged(steady, 0.0, 0.25).severity == "ok"  # the bound itself passes
    error = judged(steady, 0.0, 0.3)
    assert error.severity == "error" and error.describe() == "anomaly-score PSI 0.300 > monitoring.score_psi_error=0.25"
    both = judged(steady, 0.35, 0.3)  # a warning share and a score error: an error with both reasons
    assert both.severity == "error" and len(both.reasons) == 2 and "drift_share_warn" in both.reasons[0]


def test_judge_does_not_judge_score_drift_on_the_champions_training_days(steady):
    in_sample = judged(steady, 0.0, 0.9, in_training_window=True)
    assert in_sample.passed
    assert in_sample.describe() == "0% of features drifted, score PSI 0.900 (a training day of this champion: " \
        "score drift not judged)"
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
    assert "score_ks" not in health_measurements({**summary, "score_ks": None})  # not finite: not judged
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
    big = DemoSettings(seed=7, machines=24, interval_minutes=1, anomaly_rate=0.0, drift_date=dt.date(2026, 11, 12))
    reference_frame = days(1, 1, big)
    partition = days(12, 17, big).iloc[:200_000].reset_index(drop=True)
    reference = build_reference(reference_frame, NUMERIC, CATEGORICAL, pseudo_scores(reference_frame), RATE)
    ours = report(reference, partition)
    assert ours.rows == 200_000 and ours.sampled_rows == 20_000 and ours.reference_sampled_rows == 5000
    full, _ = evidently_drift(reference_frame, partition, NUMERIC, CATEGORICAL)
    assert ours.columns["drifted"].tolist() == full["drifted"].tolist()
    assert sorted(ours.drifted_columns) == sorted(DRIFTING)


# ------------------------------------------------------------------ errors
def test_a_missing_feature_column_is_named(reference):
    day = days(8, 8)
    with pytest.raises(DriftError, match="current partition lacks feature column.*'pressure_bar'"):
        drift_report(reference, day.drop(columns="pressure_bar"), pseudo_scores(day), flags_at(RATE, len(day)))


def test_an_all_missing_column_is_named(reference):
    day = days(8, 8).assign(power_kw=np.nan)
    with pytest.raises(DriftError, match="'power_kw' of the current partition has only missing values"):
        report(reference, day)
    with pytest.raises(DriftError, match="'rpm' of the reference frame has no finite values"):
        build_reference(day.assign(rpm=np.nan), NUMERIC, CATEGORICAL, np.zeros(len(day)), RATE)


def test_an_empty_partition_and_misaligned_scores_raise(reference):
    day = days(8, 8)
    with pytest.raises(DriftError, match="empty"):
        drift_report(reference, day.iloc[:0], np.empty(0), np.empty(0, dtype=bool))
    with pytest.raises(DriftError, match="current_scores has 10 values but the current partition has 1728 rows"):
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
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "pip install 'pynomaly[monitoring]'" in done.stdout
