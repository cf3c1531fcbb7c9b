"""The Pynomaly code location: every feed in ``$PYNOMALY_FEEDS_DIR`` becomes its own asset graph.

This module only composes: stages live in ``defs/``, resources in ``resources.py``.
Heavy libraries (torch, tensorflow, shap, evidently, mlflow, great_expectations) are
imported inside the functions that use them, so loading stays fast.
"""

from __future__ import annotations

import importlib
import os

import dagster as dg

from pynomaly_assets.defs.alerts import build_alert_sensors
from pynomaly_assets.defs.arrival import build_arrival_sensor, build_freshness
from pynomaly_assets.defs.automation import build_automation_sensor, with_automation
from pynomaly_assets.defs.explain import build_explanations_asset
from pynomaly_assets.defs.export import build_export_asset
from pynomaly_assets.defs.ingest import build_raw_asset
from pynomaly_assets.defs.jobs import build_jobs
from pynomaly_assets.defs.maintenance import build_maintenance_assets
from pynomaly_assets.defs.monitoring import build_monitoring_assets
from pynomaly_assets.defs.scoring import build_scoring_asset
from pynomaly_assets.defs.sensors import build_retrain_sensor
from pynomaly_assets.defs.training import build_training_assets
from pynomaly_assets.defs.validation import build_validated_asset
from pynomaly_assets.feed_context import FeedContext, load_feed_contexts
from pynomaly_assets.resources import default_resources


def build_feed_definitions(fc: FeedContext) -> dg.Definitions:
    """All assets, checks, jobs, schedules and sensors of one feed."""
    jobs, schedules = build_jobs(fc)
    freshness_checks, freshness_sensors = build_freshness(fc)
    arrival = build_arrival_sensor(fc, jobs)
    automation = build_automation_sensor(fc)
    return dg.Definitions(
        # schedules.trigger: automation adds the conditions (defs/automation.py); others unchanged
        assets=with_automation(
            fc,
            [
                build_raw_asset(fc),
                build_validated_asset(fc),
                *build_training_assets(fc),
                build_scoring_asset(fc),
                build_explanations_asset(fc),
                build_export_asset(fc),
                *build_monitoring_assets(fc),
                *build_maintenance_assets(fc),
            ],
        ),
        asset_checks=freshness_checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[
            build_retrain_sensor(fc, jobs),
            *build_alert_sensors(fc, jobs),
            *([arrival] if arrival is not None else []),
            *([automation] if automation is not None else []),
            *freshness_sensors,
        ],
    )


EXECUTOR_ENV = "PYNOMALY_EXECUTOR"
#: PYNOMALY_EXECUTOR value -> (module, executor); the last three are Dagster's own step executors
#: for running beyond one machine (pip install 'pynomaly[deploy]'; docs/deploy.md)
EXECUTORS = {
    "multiprocess": ("dagster", "multiprocess_executor"),
    "in_process": ("dagster", "in_process_executor"),
    "k8s": ("dagster_k8s", "k8s_job_executor"),
    "docker": ("dagster_docker", "docker_executor"),
    "celery": ("dagster_celery", "celery_executor"),
}


def executor_from_env() -> dg.ExecutorDefinition | None:
    """The executor every job of the code location runs its steps with (``$PYNOMALY_EXECUTOR``).

    Unset: Dagster's default, which runs steps in subprocesses and accepts ``execution:
    {config: {in_process: {}}}`` in run config to run them in one process instead.
    """
    name = os.environ.get(EXECUTOR_ENV, "").strip()
    if not name:
        return None
    if name not in EXECUTORS:
        raise dg.DagsterInvalidDefinitionError(
            f"{EXECUTOR_ENV}={name!r} is not an executor; use one of {sorted(EXECUTORS)}"
        )
    module, attr = EXECUTORS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise dg.DagsterInvalidDefinitionError(
            f"{EXECUTOR_ENV}={name!r} needs {module.replace('_', '-')}, which is not installed: "
            f"pip install 'pynomaly[deploy]' ({exc})"
        ) from exc


def build_definitions(feeds: list[FeedContext] | None = None) -> dg.Definitions:
    feeds = load_feed_contexts() if feeds is None else feeds
    return dg.Definitions.merge(
        *(build_feed_definitions(fc) for fc in feeds),
        dg.Definitions(resources=default_resources(), executor=executor_from_env()),
    )


defs = build_definitions()
