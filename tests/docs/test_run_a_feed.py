"""docs/run_a_feed.md, run as written: every shell block in order, then where the UI lists the runs.

The page's feed file (its YAML block) goes into a temporary feeds directory with four days of
CSV telemetry; each shell block then runs in ``bash`` from the repository root, with
``PYNOMALY_FEEDS_DIR``, ``PYNOMALY_HOME`` and ``DAGSTER_HOME`` in temporary directories and the
variables a block exports carried to the next, as in one terminal. A block marked as a service
(the daemon) is started in the background and stopped at the end. Between blocks the test waits
for every run to end, as the page tells its reader to. Then it asks the instance and Dagster's
GraphQL API (the one the UI uses, on the workspace of ``workspace.yaml``) whether each run has
the code location's origin and is on its job's page, and reads the exported table.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG, REPOSITORY_LABEL_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from tests.docs.test_snippets import ROOT, shell_snippets

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "run_a_feed.md"
FEED = "machines"
DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(4)]
ROWS_PER_DAY = 2 * 24 * 4  # two machines, a reading every 15 minutes
LOCATION, REPOSITORY = "pynomaly", "__repository__"
#: a block's runs, or the daemon's, must end within this
RUN_TIMEOUT_S = 600

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
    ... on Sensor { sensorState { status ticks(limit: 20) { status runIds } } }
  }
}
"""
SCHEDULE_STATE = """
query ScheduleState($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { status } }
  }
}
"""


def _feed_yaml() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    (feed,) = [b for b in blocks if (yaml.safe_load(b) or {}).get("name") == FEED]
    return feed


def _write_feed(feeds: Path) -> None:
    # the reader saves the page's feed file; the page's own block writes the example's CSV files
    feeds.mkdir(parents=True)
    (feeds / f"{FEED}.yaml").write_text(_feed_yaml())


def _instance(dagster_home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))


def _wait_for_runs(dagster_home: Path, timeout: float = RUN_TIMEOUT_S) -> None:
    """Until no run of the instance is queued, starting or started (the reader's "wait")."""
    deadline = time.monotonic() + timeout
    while True:
        with _instance(dagster_home) as instance:
            busy = [r for r in instance.get_runs() if not r.is_finished]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"runs still not finished: {[(r.job_name, r.status) for r in busy]}"
            )
        time.sleep(2)


def _block_script(text: str, state: Path, *, keep_exports: bool = True) -> str:
    # one terminal: what a block exports (the activated venv, the variables) the next one sees
    script = f"set -euo pipefail\nif [ -f {state} ]; then source {state}; fi\n{text}\n"
    return script + (f"export -p > {state}\n" if keep_exports else "")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory, signing_key_file):
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip("the page activates the repository's ./.venv, which is not there")
    if shutil.which("sqlite3") is None:
        pytest.skip("the page reads the warehouse with the sqlite3 command, which is not installed")
    root = tmp_path_factory.mktemp("run_a_feed")
    feeds, home, dagster_home = root / "feeds", root / "home", root / "dagster_home"
    _write_feed(feeds)
    mp = pytest.MonkeyPatch()
    for var in (
        "PYNOMALY_WAREHOUSE_URL",
        "PYNOMALY_WAREHOUSE_SCHEMA",
        "PYNOMALY_MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "PYNOMALY_REPORTS_DIR",
        "PYNOMALY_SIGNING_KEY",
        "PYNOMALY_EXECUTOR",
    ):
        mp.delenv(var, raising=False)
    # the page's variables default to paths in the repository: the test sets them first
    mp.setenv("PYNOMALY_FEEDS_DIR", str(feeds))
    mp.setenv("PYNOMALY_HOME", str(home))
    mp.setenv("DAGSTER_HOME", str(dagster_home))
    state = root / "terminal.env"
    outputs: dict[str, str] = {}
    timings: dict[str, float] = {}
    services: list[subprocess.Popen] = []
    try:
        for snippet in shell_snippets(DOC):
            script = _block_script(snippet.text, state, keep_exports=not snippet.service)
            started = time.monotonic()
            if snippet.service:
                with (root / f"service{len(services)}.log").open("w") as log:
                    services.append(
                        subprocess.Popen(
                            ["bash", "-c", script],
                            cwd=ROOT,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                outputs[snippet.where] = ""
            else:
                # the pipes stay open until the runs a block launched end (they inherit them)
                proc = subprocess.run(
                    ["bash", "-c", script],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=RUN_TIMEOUT_S,
                    check=False,
                )
                assert proc.returncode == 0, (
                    f"{snippet.where} exited {proc.returncode}:\n{snippet.text}\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
                outputs[snippet.where] = proc.stdout
                _wait_for_runs(dagster_home)
            timings[snippet.where] = time.monotonic() - started
        _wait_for_runs(dagster_home)
        with (
            _instance(dagster_home) as instance,
            WorkspaceProcessContext(
                instance, WorkspaceFileTarget([str(ROOT / "workspace.yaml")])
            ) as process,
        ):
            walkthrough = {
                "instance": instance,
                "context": process.create_request_context(),
                "outputs": outputs,
                "timings": timings,
                "home": home,
            }
            # the daemon evaluates the retraining sensor as soon as it starts: its history
            deadline = time.monotonic() + 120
            while not _sensor(walkthrough)["sensorState"]["ticks"]:
                assert time.monotonic() < deadline, "the daemon never evaluated the sensor"
                time.sleep(2)
            _wait_for_runs(dagster_home)
            for service in services:
                _stop(service)
            yield walkthrough
    finally:
        for service in services:
            _stop(service)
        mp.undo()


def _sensor(walkthrough) -> dict:
    data = _graphql(walkthrough, SENSOR_TICKS, {"sensorName": f"{FEED}__retrain_sensor"})
    assert data["sensorOrError"]["__typename"] == "Sensor", data
    return data["sensorOrError"]


def _runs(walkthrough, job: str) -> list[dg.DagsterRun]:
    return list(walkthrough["instance"].get_runs(dg.RunsFilter(job_name=f"{FEED}__{job}")))


def _launched_by_the_page(runs: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
    """Without the runs the retraining sensor may launch when a day fails its checks."""
    return [r for r in runs if "dagster/sensor_name" not in r.tags]


def _graphql(walkthrough, query: str, selector: dict) -> dict:
    base = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    result = execute_dagster_graphql(
        walkthrough["context"], query, {"selector": {**base, **selector}}
    )
    assert result.errors is None, result.errors
    return result.data


def test_every_block_ran_and_every_run_it_launched_succeeded(walkthrough):
    runs = _launched_by_the_page(walkthrough["instance"].get_runs())
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [
        (r.job_name, r.tags.get(PARTITION_NAME_TAG), r.status) for r in runs
    ]
    print("seconds per block:", {k: round(v) for k, v in walkthrough["timings"].items()})


def test_feed_check_prints_the_partition_keys_and_the_first_commands(walkthrough):
    (check,) = [out for out in walkthrough["outputs"].values() if "feed 'machines' is valid" in out]
    assert f"day {DAYS[0]}: {ROWS_PER_DAY} rows sampled" in check
    assert "partitions: one per UTC day (keys YYYY-MM-DD) from 2026-11-01" in check
    launch = (
        "dagster job launch -w workspace.yaml -j machines__ingest "
        '--tags \'{"dagster/partition": "2026-11-01"}\''
    )
    assert launch in check
    assert launch in DOC.read_text()  # what the page runs is what the command prints


def test_every_run_has_the_code_location_s_origin(walkthrough):
    instance = walkthrough["instance"]
    runs = instance.get_runs()
    label = f"{REPOSITORY}@{LOCATION}"
    labelled = instance.get_runs(dg.RunsFilter(tags={REPOSITORY_LABEL_TAG: label}))
    assert {r.run_id for r in labelled} == {r.run_id for r in runs}
    for run in runs:
        assert run.remote_job_origin is not None, run.job_name
        assert run.remote_job_origin.location_name == LOCATION


@pytest.mark.parametrize(
    ("job", "partitions"),
    [
        ("ingest", {"2026-11-01", "2026-11-02...2026-11-03"}),
        ("train", {None}),
        ("score", {"2026-11-01", "2026-11-02", "2026-11-03"}),
        ("daily", {"2026-11-04"}),
    ],
)
def test_each_run_is_on_its_job_s_page(walkthrough, job, partitions):
    data = _graphql(walkthrough, JOB_RUNS, {"pipelineName": f"{FEED}__{job}"})["pipelineOrError"]
    assert data["__typename"] == "Pipeline", data
    on_page = {r["runId"] for r in data["runs"]}
    runs = _runs(walkthrough, job)
    assert on_page == {r.run_id for r in runs}

    def partition(run: dg.DagsterRun) -> str | None:
        tags = run.tags
        if "dagster/asset_partition_range_start" in tags:
            return (
                f"{tags['dagster/asset_partition_range_start']}..."
                f"{tags['dagster/asset_partition_range_end']}"
            )
        return tags.get(PARTITION_NAME_TAG)

    assert {partition(r) for r in _launched_by_the_page(runs)} == partitions


def test_the_range_is_one_run_with_a_materialization_per_day(walkthrough):
    instance = walkthrough["instance"]
    (ranged,) = [r for r in _runs(walkthrough, "ingest") if PARTITION_NAME_TAG not in r.tags]
    key = dg.AssetKey([FEED, "validated"])
    events = instance.fetch_materializations(key, limit=20).records
    by_day = {e.partition_key: e.run_id for e in events}
    assert {day for day, run in by_day.items() if run == ranged.run_id} == {
        "2026-11-02",
        "2026-11-03",
    }


def test_the_score_backfill_is_one_run_per_day(walkthrough):
    instance = walkthrough["instance"]
    (backfill,) = instance.get_backfills()
    assert list(backfill.partition_names) == ["2026-11-01", "2026-11-02"]
    tagged = {
        r.tags[PARTITION_NAME_TAG]
        for r in _runs(walkthrough, "score")
        if r.tags.get(BACKFILL_ID_TAG) == backfill.backfill_id
    }
    assert tagged == {"2026-11-01", "2026-11-02"}


def test_the_page_s_query_and_the_warehouse_hold_every_scored_day(walkthrough):
    # the page's sqlite3 block ran before the daemon's day: three days, 192 rows each
    (summary,) = [out for out in walkthrough["outputs"].values() if out.startswith("2026-11-01|")]
    assert [line.split("|")[:2] for line in summary.splitlines()] == [
        [str(day), str(ROWS_PER_DAY)] for day in DAYS[:3]
    ]
    with sqlite3.connect(walkthrough["home"] / "warehouse.db") as db:
        rows = db.execute(
            "SELECT partition_date, COUNT(*) FROM anomaly_scores WHERE feed = ? "
            "GROUP BY partition_date ORDER BY partition_date",
            (FEED,),
        ).fetchall()
    assert rows == [(str(day), ROWS_PER_DAY) for day in DAYS]


def test_the_daemon_s_sensor_history_and_the_started_schedule_are_on_their_pages(walkthrough):
    sensor = _sensor(walkthrough)
    assert sensor["sensorState"]["status"] == "RUNNING" and sensor["sensorState"]["ticks"]
    # a retrain the sensor launched (the page's example fails a drift check on 2026-11-04) is
    # in the history, on the tick that launched it
    launched = {run for tick in sensor["sensorState"]["ticks"] for run in tick["runIds"]}
    by_sensor = walkthrough["instance"].get_runs(
        dg.RunsFilter(tags={"dagster/sensor_name": f"{FEED}__retrain_sensor"})
    )
    assert {r.run_id for r in by_sensor} == launched
    data = _graphql(walkthrough, SCHEDULE_STATE, {"scheduleName": f"{FEED}__daily_schedule"})
    assert data["scheduleOrError"]["scheduleState"]["status"] == "RUNNING", data
