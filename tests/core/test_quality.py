"""Data-quality suites and runs on real Great Expectations (pynomaly_core.quality)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.data.validation import validate_partition
from pynomaly_core.quality import QualitySpecError, build_suite_spec, run_quality

# tests/assets/helpers.py SMALL_DEMO with declared ranges and categories (that module imports dagster)
FEED = {
    "name": "demo_small",
    "source": {
        "kind": "demo",
        "seed": 3,
        "machines": 2,
        "interval_minutes": 15,
        "anomaly_rate": 0.03,
        "drift_date": "2026-11-12",
    },
    "event_time": "event_time",
    "record_key": "reading_id",
    "label": "is_anomaly",
    "passthrough": ["machine_id", "anomaly_kind"],
    "features": [
        {"name": "machine_type", "type": "category", "allowed": ["press", "lathe", "mill"]},
        {"name": "rpm", "type": "float", "min": 0, "max": 5000},
        {"name": "power_kw", "type": "float"},
        {"name": "temperature_c", "type": "float"},
        {"name": "vibration_mm_s", "type": "float", "min": 0},
        {"name": "pressure_bar", "type": "float", "min": 0},
    ],
    "partitioning": {"start_date": "2026-11-01"},
}
SETTINGS = DemoSettings(
    seed=3, machines=2, interval_minutes=15, anomaly_rate=0.03, drift_date=dt.date(2026, 11, 12)
)


def validated_days(feed, first: dt.date, days: int) -> pd.DataFrame:
    frames = [
        validate_partition(
            generate_day(first + dt.timedelta(days=i), SETTINGS), feed, source="demo"
        ).valid
        for i in range(days)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def feed():
    return parse_feed(FEED, source="test_quality")


@pytest.fixture(scope="module")
def reference(feed) -> pd.DataFrame:
    return validated_days(feed, dt.date(2026, 11, 1), 5)


@pytest.fixture(scope="module")
def spec(feed, reference) -> list[dict]:
    return build_suite_spec(feed, reference)


@pytest.fixture(scope="module")
def clean_week(feed) -> pd.DataFrame:
    return validated_days(feed, dt.date(2026, 11, 6), 6)


@pytest.fixture(scope="module")
def broken_week(clean_week) -> pd.DataFrame:
    broken = clean_week.copy()
    broken.loc[3, "reading_id"] = None
    broken.loc[4, "reading_id"] = broken.loc[5, "reading_id"]
    broken.loc[10, "rpm"] = -50.0
    return broken.drop(columns=["anomaly_kind"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, feed, spec, clean_week, broken_week):
    """One Great Expectations project shared by the clean, drifted and broken weeks."""
    output_dir = tmp_path_factory.mktemp("quality")
    drifted_week = validated_days(feed, dt.date(2026, 11, 12), 6)
    return {
        "output_dir": output_dir,
        "clean": run_quality(feed, clean_week, spec, run_name="2026-W45", output_dir=output_dir),
        "drifted": run_quality(
            feed, drifted_week, spec, run_name="2026-W46", output_dir=output_dir
        ),
        "broken": run_quality(
            feed, broken_week, spec, run_name="2026-W45-broken", output_dir=output_dir
        ),
    }


def by_type_and_column(spec: list[dict], rule: str) -> set[tuple[str, str | None]]:
    return {(e["type"], e["kwargs"].get("column")) for e in spec if e["rule"] == rule}


def test_spec_derives_schema_expectations_from_the_feed(feed, spec):
    schema = by_type_and_column(spec, "schema")
    for column in feed.expected_columns:
        assert ("expect_column_to_exist", column) in schema
    assert ("expect_column_values_to_not_be_null", "reading_id") in schema
    assert ("expect_column_values_to_be_unique", "reading_id") in schema
    assert ("expect_column_values_to_not_be_null", "event_time") in schema
    for feature in feed.feature_names:
        assert ("expect_column_values_to_be_in_type_list", feature) in schema
        assert ("expect_column_values_to_not_be_null", feature) in schema
    rpm_range = next(
        e
        for e in spec
        if e["rule"] == "schema"
        and e["type"] == "expect_column_values_to_be_between"
        and e["kwargs"]["column"] == "rpm"
    )
    assert (rpm_range["kwargs"]["min_value"], rpm_range["kwargs"]["max_value"]) == (0.0, 5000.0)
    allowed = next(
        e
        for e in spec
        if e["rule"] == "schema"
        and e["kwargs"].get("column") == "machine_type"
        and e["type"] == "expect_column_values_to_be_in_set"
    )
    assert allowed["kwargs"]["value_set"] == ["press", "lathe", "mill"]
    assert ("expect_column_values_to_be_between", "power_kw") not in schema  # no min/max declared


def test_spec_learns_reference_expectations_and_is_plain_json(spec, reference):
    assert json.loads(json.dumps(spec)) == spec
    assert {e["rule"] for e in spec} == {"schema", "reference"}
    mean = next(
        e
        for e in spec
        if e["rule"] == "reference"
        and e["type"] == "expect_column_mean_to_be_between"
        and e["kwargs"]["column"] == "temperature_c"
    )
    observed = reference["temperature_c"].mean()
    assert mean["kwargs"]["min_value"] < observed < mean["kwargs"]["max_value"]
    quantile_range = next(
        e
        for e in spec
        if e["rule"] == "reference"
        and e["type"] == "expect_column_values_to_be_between"
        and e["kwargs"]["column"] == "temperature_c"
    )
    temperature = reference["temperature_c"]
    widened = 0.5 * temperature.std()
    assert quantile_range["kwargs"]["min_value"] == pytest.approx(
        temperature.quantile(0.01) - widened
    )
    assert quantile_range["kwargs"]["max_value"] == pytest.approx(
        temperature.quantile(0.99) + widened
    )
    inside = temperature.between(
        quantile_range["kwargs"]["min_value"], quantile_range["kwargs"]["max_value"]
    ).mean()
    assert quantile_range["kwargs"]["mostly"] == pytest.approx(inside - 0.01, abs=1e-4)
    categories = next(
        e
        for e in spec
        if e["rule"] == "reference"
        and e["kwargs"].get("column") == "machine_type"
        and e["type"] == "expect_column_values_to_be_in_set"
    )
    assert sorted(categories["kwargs"]["value_set"]) == sorted(reference["machine_type"].unique())


def test_spec_names_the_feed_and_column_when_the_reference_lacks_a_feature(feed, reference):
    with pytest.raises(QualitySpecError, match=r"demo_small.*pressure_bar"):
        build_suite_spec(feed, reference.drop(columns=["pressure_bar"]))


def test_clean_week_passes_every_expectation(runs, spec, clean_week):
    result = runs["clean"]
    assert result.success, result.summary()["failures"]
    assert (result.evaluated, result.successful, result.failed) == (len(spec), len(spec), 0)
    assert result.success_percent == 100.0
    assert result.rows == len(clean_week)


def test_drifted_week_fails_reference_expectations_not_schema_ones(runs):
    result = runs["drifted"]
    assert not result.success
    assert {f["rule"] for f in result.failures} == {"reference"}
    failed = {(f["type"], f["column"]) for f in result.failures}
    assert ("expect_column_mean_to_be_between", "temperature_c") in failed
    assert ("expect_column_values_to_be_between", "temperature_c") in failed
    mean = next(
        f
        for f in result.failures
        if f["type"] == "expect_column_mean_to_be_between" and f["column"] == "temperature_c"
    )
    assert mean["observed_value"] > mean["kwargs"]["max_value"]
    assert result.summary()["failed_schema"] == 0
    assert any("temperature_c" in line for line in result.summary()["failures"])


def test_null_and_duplicate_keys_out_of_range_values_and_a_missing_column_fail_schema_expectations(
    runs, broken_week
):
    result = runs["broken"]
    assert not result.success
    schema_failures = {
        (f["type"], f["column"]): f for f in result.failures if f["rule"] == "schema"
    }
    assert set(schema_failures) == {
        ("expect_column_values_to_not_be_null", "reading_id"),
        ("expect_column_values_to_be_unique", "reading_id"),
        ("expect_column_values_to_be_between", "rpm"),
        ("expect_column_to_exist", "anomaly_kind"),
        ("expect_table_columns_to_match_set", None),
    }
    rpm = schema_failures[("expect_column_values_to_be_between", "rpm")]
    assert rpm["unexpected_count"] == 1
    assert rpm["partial_unexpected_list"] == [-50.0]
    assert rpm["unexpected_record_keys"] == [broken_week.loc[10, "reading_id"]]
    assert (
        schema_failures[("expect_column_values_to_not_be_null", "reading_id")]["unexpected_count"]
        == 1
    )


def test_data_docs_and_result_json_are_written_under_output_dir(runs):
    result, output_dir = runs["clean"], runs["output_dir"]
    assert result.docs_path is not None and result.docs_path.name == "index.html"
    assert result.docs_path.is_relative_to(output_dir)
    assert "demo_small_data_quality" in result.docs_path.read_text()
    assert result.page_path is not None and result.page_path.exists()
    assert "2026-W45" in str(result.page_path)
    payload = json.loads(result.json_path.read_text())
    assert payload["suite_name"] == "demo_small_data_quality"
    assert payload["meta"]["run_id"]["run_name"] == "2026-W45"
    assert len(payload["results"]) == result.evaluated


def test_running_twice_with_the_same_run_name_is_idempotent(runs, feed, spec, clean_week):
    import great_expectations as gx

    output_dir = runs["output_dir"]
    again = run_quality(feed, clean_week, spec, run_name="2026-W45", output_dir=output_dir)
    assert again.summary()["failures"] == runs["clean"].summary()["failures"]
    assert (again.evaluated, again.failed) == (runs["clean"].evaluated, runs["clean"].failed)
    context = gx.get_context(mode="file", project_root_dir=str(output_dir))
    assert [s.name for s in context.suites.all()] == ["demo_small_data_quality"]
    assert len(context.suites.get("demo_small_data_quality").expectations) == len(spec)
    assert list(context.data_sources.all()) == ["pynomaly_demo_small"]
    assert len(list(context.validation_definitions.all())) == 1
    assert len(list(context.checkpoints.all())) == 1


def test_unknown_expectation_names_feed_column_and_expectation(feed, clean_week, tmp_path):
    bad = [
        {"type": "expect_column_values_to_be_purple", "kwargs": {"column": "rpm"}, "rule": "schema"}
    ]
    with pytest.raises(
        QualitySpecError, match=r"demo_small.*expect_column_values_to_be_purple.*rpm"
    ):
        run_quality(feed, clean_week, bad, run_name="bad-spec", output_dir=tmp_path)
    assert not (tmp_path / "gx").exists()


def test_module_imports_without_great_expectations_and_names_the_extra():
    code = (
        "import sys\n"
        "import pynomaly_core.quality as q\n"
        "assert not [m for m in sys.modules if m.startswith('great_expectations')], 'imported eagerly'\n"
        "sys.modules['great_expectations'] = None  # what an install without the extra looks like\n"
        "try:\n"
        "    q.run_quality(None, None, [], run_name='x', output_dir='.')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "pip install 'pynomaly[quality]'" in out.stdout


def test_weekly_suite_passes_every_feature_type_in_each_dtype_validation_or_a_source_gives(
    tmp_path,
):
    """Declared int/bool/float/category features pass their type expectations, whether the frame
    holds numpy dtypes or pandas' nullable ones (a false alarm once read "observed int64")."""
    import numpy as np

    from pynomaly_core.data.config import parse_feed as parse

    n = 300
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 10, n)
    columns = {
        "i_numpy": ("int", ints.astype("int64")),
        "i_nullable": ("int", pd.array(ints, dtype="Int64")),
        "i_int32": ("int", ints.astype("int32")),
        "f_numpy": ("float", rng.normal(size=n)),
        "f_nullable": ("float", pd.array(rng.normal(size=n), dtype="Float64")),
        "b_numpy": ("bool", ints % 2 == 0),
        "b_nullable": ("bool", pd.array(ints % 2 == 0, dtype="boolean")),
        "c_object": ("category", np.array(["a", "b", "c"], dtype=object)[ints % 3]),
        "c_string": ("category", pd.array(["a", "b", "c"] * 100, dtype="string")),
    }
    feed = parse(
        {
            "name": "every_type",
            "source": {"kind": "demo"},
            "event_time": "t",
            "record_key": "id",
            "features": [{"name": name, "type": kind} for name, (kind, _) in columns.items()],
            "partitioning": {"start_date": "2026-11-01"},
        },
        source="test_quality",
    )
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "t": pd.date_range("2026-11-01", periods=n, freq="min", tz="UTC"),
            **{name: values for name, (_, values) in columns.items()},
        }
    )
    spec = [e for e in build_suite_spec(feed, frame) if e["rule"] == "schema"]
    result = run_quality(feed, frame, spec, run_name="types", output_dir=tmp_path)
    assert result.failures == []
    assert result.success
    typed = [e for e in spec if e["type"] == "expect_column_values_to_be_in_type_list"]
    assert len(typed) == len(columns)
