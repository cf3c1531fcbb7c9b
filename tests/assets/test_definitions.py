"""The code location loads fast, validates, and gives every feed its own asset graph."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from tests.assets.helpers import SMALL_DEMO, definitions_for, write_feed

REPO = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "tensorflow", "shap", "evidently", "mlflow", "great_expectations"]
STAGES = [
    "raw",
    "validated",
    "training_window",
    "detector_candidates",
    "champion",
    "monitoring_reference",
    "anomaly_scores",
    "explanations",
    "drift_report",
    "detector_performance",
    "anomaly_table",
    "data_quality_report",
    "model_health",
    "retention_cleanup",
    "platform_audit",
    "maintenance_report",
]


def test_default_definitions_have_the_demo_feed_graph():
    from pynomaly_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    # the synthetic demo feed and the real one (nab_ec2_cpu), each with the whole graph
    assert keys == {
        f"{feed}/{stage}" for feed in ("demo_telemetry", "nab_ec2_cpu") for stage in STAGES
    }
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "demo_telemetry__ingest",
        "demo_telemetry__train",
        "demo_telemetry__score",
        "demo_telemetry__daily",
        "demo_telemetry__retrain",
        "demo_telemetry__maintenance",
    }


def test_monitoring_checks_never_block_and_the_sensor_runs_by_default():
    from pynomaly_assets.definitions import defs

    declared = {}
    for stage in ("drift_report", "detector_performance", "data_quality_report", "model_health"):
        for spec in defs.resolve_assets_def(dg.AssetKey(["demo_telemetry", stage])).check_specs:
            declared[spec.name] = spec.blocking
    assert declared == {
        "drift_within_bounds": False,
        "performance_not_degraded": False,
        "expectations_met": False,
        "versions_reproducible": False,
    }
    sensor = defs.resolve_sensor_def("demo_telemetry__retrain_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {t.job_name for t in sensor.targets} == {
        "demo_telemetry__retrain",
        "demo_telemetry__score",
    }


def test_two_feeds_get_separate_prefixed_assets(tmp_path):
    write_feed(tmp_path, SMALL_DEMO)
    write_feed(tmp_path, {**SMALL_DEMO, "name": "other_feed"})
    defs = definitions_for(tmp_path)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert len(keys) == 2 * len(STAGES)
    assert {k.split("/")[0] for k in keys} == {"demo_small", "other_feed"}


def test_blocking_checks_are_declared_on_validated():
    from pynomaly_assets.definitions import defs

    specs = {
        s.name: s
        for s in defs.resolve_assets_def(dg.AssetKey(["demo_telemetry", "validated"])).check_specs
    }
    assert set(specs) == {"row_accounting", "schema_pass_rate", "min_rows"}
    assert all(s.blocking for s in specs.values())


def test_promotion_gate_is_a_blocking_check_on_champion():
    from pynomaly_assets.definitions import defs

    specs = list(defs.resolve_assets_def(dg.AssetKey(["demo_telemetry", "champion"])).check_specs)
    assert [(s.name, s.blocking) for s in specs] == [("promotion_gate", True)]


def test_dagster_definitions_validate_passes():
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dg_check_defs_passes():
    dg_cli = Path(sys.executable).parent / "dg"
    proc = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr


def test_importing_the_code_location_imports_no_heavy_framework():
    code = (
        f"import sys, pynomaly_assets.definitions;print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_invalid_feed_file_fails_the_load_naming_the_file(tmp_path):
    bad = write_feed(tmp_path, {**SMALL_DEMO, "detector": {"contamination": 2}})
    import pytest

    from pynomaly_core.data.config import FeedConfigError

    with pytest.raises(FeedConfigError, match=str(bad)):
        definitions_for(tmp_path)


def test_executor_comes_from_the_environment(tmp_path, monkeypatch):
    write_feed(tmp_path, SMALL_DEMO)
    default = definitions_for(tmp_path).resolve_job_def("demo_small__score")
    # Dagster's default: subprocesses, or one process with execution: {config: {in_process: {}}}
    assert default.executor_def.name == "multi_or_in_process_executor"
    monkeypatch.setenv("PYNOMALY_EXECUTOR", "multiprocess")
    assert (
        definitions_for(tmp_path).resolve_job_def("demo_small__score").executor_def.name
        == "multiprocess"
    )
    monkeypatch.setenv("PYNOMALY_EXECUTOR", "k8s")
    k8s = definitions_for(tmp_path).resolve_job_def("demo_small__train")
    assert k8s.executor_def.name == "k8s"
    monkeypatch.setenv("PYNOMALY_EXECUTOR", "spark")
    import pytest

    with pytest.raises(dg.DagsterInvalidDefinitionError, match="PYNOMALY_EXECUTOR='spark'"):
        definitions_for(tmp_path)
