"""The demo's runs and the retraining sensor's ticks are where the Dagster UI looks for them.

The demo executes in-process; the UI's job page lists the runs of a job of a *loaded code
location* (runs filtered by the repository label), and the sensor page lists the ticks recorded
under the sensor's selector. This test runs the demo's story on a small drifting feed, then loads
the workspace (``workspace.yaml``: a gRPC code server started as a subprocess, as
``dagster dev`` does) and asks Dagster's GraphQL API, the one the UI uses.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from pynomaly_assets.demo import WORKSPACE, CodeLocation, run_feed
from tests.assets.helpers import SMALL_DEMO, definitions_for, seed_mlflow, write_feed

pytestmark = pytest.mark.system

FEED = "ui_runs"
START, TRAIN_END, END = dt.date(2026, 11, 1), dt.date(2026, 11, 3), dt.date(2026, 11, 4)

JOB_RUNS = """
query JobRuns($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { runs(limit: 50) { runId status tags { key value } } }
  }
}
"""

SENSOR_TICKS = """
query SensorTicks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState { ticks(limit: 20) { status runIds skipReason } }
    }
  }
}
"""


def _feed() -> dict:
    data = copy.deepcopy(SMALL_DEMO)
    data["name"] = FEED
    data["source"].update(
        {"anomaly_rate": 0.05, "drift_date": END.isoformat(), "drift_strength": 2.0}
    )
    data["detector"] = {"name": "KNN", "contamination": 0.05}
    data["lifecycle"] = {"candidates": ["KNN"], "min_labelled_anomalies": 5, "n_boot": 200}
    data["explanations"] = {"top_k": 0}
    data["monitoring"] = {
        "cooldown_hours": 0,
        "drift_sample_rows": 1000,
        "reference_sample_rows": 1000,
        "canary_rows": 100,
        "retrain_on": "warn",
        "retrain_on_drift": True,
    }
    return data


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphql_runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    # the code server the workspace starts reads the same feeds
    mp.setenv("PYNOMALY_FEEDS_DIR", str(root / "feeds"))
    for var in ("PYNOMALY_WAREHOUSE_URL", "PYNOMALY_MLFLOW_TRACKING_URI", "PYNOMALY_REPORTS_DIR"):
        mp.delenv(var, raising=False)
    write_feed(root / "feeds", _feed())
    seed_mlflow(root / "home")
    defs = definitions_for(root / "feeds")
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        report = run_feed(
            defs, FEED, START, END, TRAIN_END, instance, echo=lambda _: None, maintenance=False
        )
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(WORKSPACE)])) as process:
            yield {
                "report": report,
                "instance": instance,
                "context": process.create_request_context(),
                "location": CodeLocation.from_workspace(),
            }
    mp.undo()


def _runs_on_job_page(story, job: str) -> list[dict]:
    location = story["location"]
    result = execute_dagster_graphql(
        story["context"],
        JOB_RUNS,
        {
            "selector": {
                "repositoryLocationName": location.location_name,
                "repositoryName": location.repository_name,
                "pipelineName": job,
            }
        },
    )
    data = result.data["pipelineOrError"]
    assert data["__typename"] == "Pipeline", data
    return data["runs"]


def test_the_story_ran_and_the_sensor_launched_a_retrain(story):
    report = story["report"]
    assert not report.failed_runs, report.failed_runs
    assert any(t.endswith("__retrain[]") for t in report.sensor_ticks), report.sensor_ticks


@pytest.mark.parametrize(
    ("job", "count"),
    [("__ingest", 4), ("__train", 1), ("__score", 5), ("__retrain", 1)],
)
def test_every_demo_run_is_on_its_job_page(story, job, count):
    """4 days ingested and scored, one refused rescore (hindsight), one training, one retrain."""
    runs = _runs_on_job_page(story, f"{FEED}{job}")
    assert len(runs) == count
    instance_runs = story["instance"].get_runs(dg.RunsFilter(job_name=f"{FEED}{job}"))
    assert {r["runId"] for r in runs} == {r.run_id for r in instance_runs}


def test_the_sensor_page_lists_its_ticks_and_the_runs_it_launched(story):
    location = story["location"]
    result = execute_dagster_graphql(
        story["context"],
        SENSOR_TICKS,
        {
            "selector": {
                "repositoryLocationName": location.location_name,
                "repositoryName": location.repository_name,
                "sensorName": f"{FEED}__retrain_sensor",
            }
        },
    )
    data = result.data["sensorOrError"]
    assert data["__typename"] == "Sensor", data
    ticks = data["sensorState"]["ticks"]
    launched = [run for tick in ticks if tick["status"] == "SUCCESS" for run in tick["runIds"]]
    (retrain,) = story["instance"].get_runs(dg.RunsFilter(job_name=f"{FEED}__retrain"))
    assert launched == [retrain.run_id]
    assert retrain.tags["dagster/sensor_name"] == f"{FEED}__retrain_sensor"
    assert any(tick["status"] == "SKIPPED" and tick["skipReason"] for tick in ticks)


def test_the_code_location_is_the_workspace_s():
    assert CodeLocation.from_workspace().location_name == "pynomaly"
    assert Path(WORKSPACE).name == "workspace.yaml"
