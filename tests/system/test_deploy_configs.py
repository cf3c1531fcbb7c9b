"""The scale-out configs under deploy/ are what Dagster's own launchers and executors accept.

The instance profiles validate against Dagster's instance schema and share the queue, monitoring,
retry and retention settings of docker/dagster.yaml (which the deployment test runs). Launcher and
executor configs validate against the schemas of dagster-k8s, dagster-docker and dagster-celery
where those packages are installed (they are not part of the core install: these tests skip
without them, saying which package is missing).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

from tests.assets.helpers import definitions_for
from tests.system.services import INSTANCE_PROFILE, REPO

DEPLOY = REPO / "deploy"
PROFILES = [INSTANCE_PROFILE, DEPLOY / "k8s" / "dagster.yaml", DEPLOY / "docker" / "dagster.yaml"]
SHARED = (
    "telemetry",
    "nux",
    "storage",
    "run_coordinator",
    "concurrency",
    "run_monitoring",
    "run_retries",
    "retention",
    "sensors",
    "schedules",
    "compute_logs",
)
DEMO_FEEDS = REPO / "pynomaly_assets" / "feeds"


def load(path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_instance_profile_validates_against_dagsters_instance_schema(
    profile, tmp_path, monkeypatch
):
    monkeypatch.setenv(
        "PYNOMALY_DAGSTER_PG_URL", "postgresql+psycopg2://dagster@127.0.0.1:5432/dagster"
    )
    monkeypatch.setenv("PYNOMALY_DAGSTER_STORAGE", str(tmp_path / "storage"))
    shutil.copy(profile, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["runs"]["tag_concurrency_limits"][0]["key"] == "pynomaly/retrain"


@pytest.mark.parametrize("profile", PROFILES[1:], ids=lambda p: str(p.relative_to(REPO)))
def test_scale_out_profile_keeps_the_queue_monitoring_retries_and_retention(profile):
    base, other = load(INSTANCE_PROFILE), load(profile)
    differing = [key for key in SHARED if base.get(key) != other.get(key)]
    assert not differing, f"{profile} differs from {INSTANCE_PROFILE} in {differing}"


def test_compose_profile_has_the_limits_the_feeds_rely_on():
    config = load(INSTANCE_PROFILE)
    limits = {item["key"]: item for item in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    # one retraining run per feed (the sensor's runs carry pynomaly/retrain=<feed>), bounded backfills
    assert limits["pynomaly/retrain"] == {
        "key": "pynomaly/retrain",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert limits["dagster/backfill"]["value"] == {"applyLimitPerUniqueValue": True}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["telemetry"] == {"enabled": False}


def test_k8s_gpu_step_config_names_a_real_step_of_the_training_job():
    run_config = load(DEPLOY / "k8s" / "run_config.k8s_job_executor.yaml")
    per_step = run_config["execution"]["config"]["per_step_k8s_config"]
    job = definitions_for(DEMO_FEEDS).resolve_job_def("demo_telemetry__train")
    steps = {node.name for node in job.nodes}
    assert set(per_step) <= steps, (
        f"unknown step keys {set(per_step) - steps}; the job has {sorted(steps)}"
    )
    for step, config in per_step.items():
        assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1", step


def test_k8s_launcher_and_executor_configs_validate_against_dagster_k8s():
    dagster_k8s = pytest.importorskip(
        "dagster_k8s", reason="dagster-k8s is not installed (pip install dagster-k8s)"
    )
    from dagster_k8s.job import get_user_defined_k8s_config

    launcher = load(DEPLOY / "k8s" / "dagster.yaml")["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
    result = process_config(dagster_k8s.K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    execution = load(DEPLOY / "k8s" / "run_config.k8s_job_executor.yaml")["execution"]["config"]
    result = process_config(dagster_k8s.k8s_job_executor.config_schema.config_type, execution)
    assert result.success, result.errors
    tags = {k: v for k, v in load(DEPLOY / "k8s" / "gpu_run_tags.yaml").items()}
    user_config = get_user_defined_k8s_config(tags)
    assert user_config.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (
        json.loads(tags["dagster-k8s/config"])["pod_spec_config"]["tolerations"][0]["key"]
        == "nvidia.com/gpu"
    )


def test_docker_launcher_and_executor_configs_validate_against_dagster_docker():
    dagster_docker = pytest.importorskip(
        "dagster_docker", reason="dagster-docker is not installed (pip install dagster-docker)"
    )
    launcher = load(DEPLOY / "docker" / "dagster.yaml")["run_launcher"]
    assert launcher["class"] == "DockerRunLauncher"
    result = process_config(dagster_docker.DockerRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    execution = load(DEPLOY / "docker" / "run_config.docker_executor.yaml")["execution"]["config"]
    result = process_config(dagster_docker.docker_executor.config_schema.config_type, execution)
    assert result.success, result.errors


def test_celery_executor_config_validates_against_dagster_celery():
    dagster_celery = pytest.importorskip(
        "dagster_celery", reason="dagster-celery is not installed (pip install dagster-celery)"
    )
    execution = load(DEPLOY / "celery" / "run_config.celery_executor.yaml")["execution"]["config"]
    result = process_config(dagster_celery.celery_executor.config_schema.config_type, execution)
    assert result.success, result.errors


def test_docker_launcher_forwards_every_setting_the_runs_need_by_name_only():
    env_vars = load(DEPLOY / "docker" / "dagster.yaml")["run_launcher"]["config"]["env_vars"]
    # names only, so no secret is ever written into the instance profile
    assert all("=" not in name for name in env_vars)
    compose = load(REPO / "docker" / "docker-compose.yml")
    code_env = compose["services"]["code_server"]["environment"]
    assert set(env_vars) <= set(code_env), set(env_vars) - set(code_env)


def test_env_example_names_every_variable_compose_requires():
    required = set()
    for compose in (REPO / "docker" / "docker-compose.yml", *DEPLOY.glob("*/docker-compose.*.yml")):
        required |= set(re.findall(r"\$\{(\w+):\?", compose.read_text()))
    example = (REPO / "docker" / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert required, "the compose files require no variable: the secrets must come from docker/.env"
    assert required <= defined, f"docker/.env.example lacks {sorted(required - defined)}"
