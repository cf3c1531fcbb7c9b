"""The production deployment as real processes: gRPC code server, dagster-webserver, dagster-daemon.

Commands come from docker/docker-compose.yml, the instance is docker/dagster.yaml on a fresh
PostgreSQL database, the workspace is docker/workspace.yaml; the warehouse and the MLflow server's
backend store are two more fresh PostgreSQL databases. Runs are launched through the webserver's
GraphQL API and dequeued by the daemon's run queue, exactly as in production.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.assets.helpers import SMALL_DEMO, write_feed
from tests.pg import temporary_database
from tests.system.services import (
    COMPOSE_FILE,
    INSTANCE_PROFILE,
    REPO,
    VENV_BIN,
    Deployment,
    compose_commands,
    free_port,
)

pytestmark = [pytest.mark.system, pytest.mark.postgres]

FEED = "demo_system"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
SYSTEM_FEED = {
    **SMALL_DEMO,
    "name": FEED,
    # the daemon must tick within the test: the schedule every minute, the sensor every 5 s
    "schedules": {"daily_cron": "* * * * *", "daily_running": True},
    "monitoring": {"sensor_interval_seconds": 5},
    # one cheap candidate and a few explanations: the test is about the services, not the models
    "lifecycle": {"candidates": ["KNN"], "n_boot": 100},
    "explanations": {"top_k": 5, "max_background": 10},
}
LOCATION = {"repositoryLocationName": "pynomaly", "repositoryName": "__repository__"}
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 420  # generous: CI runs this beside the rest of the suite on 2 cores
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""
RUN_STATUS = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on Error { message } }
}"""
RUN_FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events {
      __typename
      ... on ExecutionStepFailureEvent { stepKey error { message } }
      ... on RunFailureEvent { message }
    } }
  }
}"""
LOCATIONS = """
query {
  workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
  } } }
}"""
SENSOR_TICKS = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 10) { status timestamp skipReason error { message } } } }
    ... on Error { message }
  }
}"""
SCHEDULE_TICKS = """
query Schedule($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { id status ticks(limit: 10) { status timestamp runIds error { message } } } }
    ... on Error { message }
  }
}"""
STAGES = ("raw", "validated", "training_window", "detector_candidates", "champion", "anomaly_scores",
          "explanations", "anomaly_table")
SCREENSHOT = REPO / "docs" / "images" / "asset_graph.png"
UPDATE_SCREENSHOT_ENV = "PYNOMALY_UPDATE_SCREENSHOT"
LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL_RUNS = """
query BackfillRuns($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on Error { message }
  }
}"""
STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) { __typename ... on Error { message } }
}"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    feeds = root / "feeds"
    write_feed(feeds, SYSTEM_FEED)
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(INSTANCE_PROFILE, dagster_home / "dagster.yaml")
    (root / "logs").mkdir()
    code_port, web_port, mlflow_port = free_port(), free_port(), free_port()
    with temporary_database("pynomaly_sys_dagster") as dagster_url, \
            temporary_database("pynomaly_sys_wh") as warehouse_url, \
            temporary_database("pynomaly_sys_mlflow") as mlflow_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYNOMALY_", "DAGSTER_", "MLFLOW_"))}
        env.update({
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DAGSTER_HOME": str(dagster_home),
            "PYNOMALY_DAGSTER_PG_URL": dagster_url.replace("postgresql+psycopg://", "postgresql+psycopg2://"),
            "PYNOMALY_DAGSTER_STORAGE": str(root / "dagster_storage"),
            "PYNOMALY_CODE_SERVER_HOST": "127.0.0.1",
            "PYNOMALY_CODE_SERVER_PORT": str(code_port),
            "PYNOMALY_HOME": str(root / "pynomaly_home"),
            "PYNOMALY_FEEDS_DIR": str(feeds),
            "PYNOMALY_WAREHOUSE_URL": warehouse_url,
            "PYNOMALY_WAREHOUSE_SCHEMA": "anomalies",
            "PYNOMALY_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
            "MLFLOW_BACKEND_STORE_URI": mlflow_url.replace("postgresql+psycopg://", "postgresql+psycopg2://"),
            "PYNOMALY_SIGNING_KEY": "system-test-signing-key",
            "MLFLOW_LOGGING_LEVEL": "WARNING",
        })
        commands = compose_commands({"PYNOMALY_CODE_SERVER_PORT": str(code_port),
                                     "PYNOMALY_WEBSERVER_PORT": str(web_port),
                                     "MLFLOW_SERVER_PORT": str(mlflow_port),
                                     "MLFLOW_ARTIFACTS_DESTINATION": str(root / "mlflow_artifacts")})
        # the services listen on all interfaces in their containers; locally, loopback is enough
        for argv in commands.values():
            for i, arg in enumerate(argv[:-1]):
                if arg in ("-h", "--host") and argv[i + 1] == "0.0.0.0":
                    argv[i + 1] = "127.0.0.1"
        dep = Deployment(env=env, log_dir=root / "logs", webserver_url=f"http://127.0.0.1:{web_port}")
        try:
            # MLflow migrates its fresh database while the code server loads the definitions
            dep.start("mlflow", commands["mlflow"])
            dep.start("code_server", commands["code_server"])
            dep.wait_until(
                "the code server's gRPC health check",
                lambda: subprocess.run(
                    [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port), "-h", "127.0.0.1"],
                    check=False, env=env, capture_output=True, timeout=30).returncode == 0,
                STARTUP_TIMEOUT, interval=2.0)
            dep.wait_until("MLflow's /health", lambda: dep.http_get_url(f"http://127.0.0.1:{mlflow_port}/health") == b"OK",
                           STARTUP_TIMEOUT)
            dep.start("webserver", commands["webserver"])
            dep.start("daemon", commands["daemon"])
            dep.wait_until("the webserver's /server_info", lambda: b"dagster_webserver_version" in dep.http_get("/server_info"),
                           STARTUP_TIMEOUT)
            entries = dep.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            loaded = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
            if loaded != {"pynomaly": "RepositoryLocation"}:
                raise dep.fail(f"workspace docker/workspace.yaml did not load the code location: {entries}")
            dep.warehouse_url, dep.mlflow_backend_url = warehouse_url, mlflow_url
            yield dep
        finally:
            dep.stop_all()
            # runs started from the code server live in its process group and are gone too
            if dep.services and any(s.process.returncode not in (0, -15, 143, None) for s in dep.services.values()):
                print(dep.logs())


# one process per run (the in_process executor): the multiprocess default would start a process
# per step, which only costs time on the test machine's two cores
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def launch(dep: Deployment, job: str, partition: str | None = None) -> str:
    tags = [{"key": "dagster/partition", "value": partition}] if partition else []
    params = {"selector": {**LOCATION, "jobName": job}, "runConfigData": IN_PROCESS,
              "executionMetadata": {"tags": tags}}
    result = dep.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise dep.fail(f"launchRun {job} [{partition}] returned {result}")
    return result["run"]["runId"]


def launch_backfill(dep: Deployment, job: str, partitions: list[str]) -> str:
    params = {"selector": {"partitionSetName": f"{job}_partition_set",
                           "repositorySelector": {"repositoryName": LOCATION["repositoryName"],
                                                  "repositoryLocationName": LOCATION["repositoryLocationName"]}},
              "partitionNames": partitions, "runConfigData": IN_PROCESS}
    result = dep.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise dep.fail(f"launchPartitionBackfill {job} {partitions} returned {result}")
    return result["backfillId"]


def backfill_made_runs(dep: Deployment, backfill_id: str, count: int) -> bool:
    """True once the backfill has a run per partition; fails at once (with its error) if the daemon failed it."""
    state = dep.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if state.get("status") in ("FAILED", "FAILING", "CANCELED", "CANCELING"):
        raise dep.fail(f"backfill {backfill_id} is {state['status']}: {(state.get('error') or {}).get('message')}")
    return len(backfill_runs(dep, backfill_id)) == count


def backfill_runs(dep: Deployment, backfill_id: str) -> list[dict]:
    result = dep.graphql(BACKFILL_RUNS, {"tags": [{"key": "dagster/backfill", "value": backfill_id}]})["runsOrError"]
    if result["__typename"] != "Runs":
        raise dep.fail(f"runs of backfill {backfill_id}: {result}")
    return result["results"]


def wait_for_runs(dep: Deployment, run_ids: dict[str, str]) -> None:
    """Wait until every run is terminal; fail naming each run that did not succeed, with its errors."""
    statuses: dict[str, str] = {}

    def all_done() -> bool:
        for label, run_id in run_ids.items():
            statuses[label] = dep.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get("status", "?")
        return all(s in TERMINAL for s in statuses.values())

    dep.wait_until(f"runs {list(run_ids)} to finish (last statuses {statuses})", all_done, RUN_TIMEOUT, interval=2.0)
    failed = {label: s for label, s in statuses.items() if s != "SUCCESS"}
    if failed:
        details = []
        for label in failed:
            events = dep.graphql(RUN_FAILURES, {"runId": run_ids[label]})["logsForRun"].get("events", [])
            details += [f"{label}: {e.get('stepKey', '')} {e.get('message') or (e.get('error') or {}).get('message')}"
                        for e in events if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")]
        raise dep.fail(f"runs did not succeed: {failed}\n" + "\n".join(details))


def test_compose_services_use_the_production_profile_and_grpc_workspace():
    commands = compose_commands({})
    assert commands["code_server"][:5] == ["dagster", "code-server", "start", "-m", "pynomaly_assets.definitions"]
    for name in ("webserver", "daemon"):
        workspace = commands[name][commands[name].index("-w") + 1]
        loaded = yaml.safe_load((REPO / workspace).read_text())["load_from"]
        assert [list(entry) for entry in loaded] == [["grpc_server"]], f"{name}: {workspace} must load a gRPC server"
    dockerfile = (COMPOSE_FILE.parent / "Dockerfile").read_text()
    assert "COPY docker/dagster.yaml /opt/dagster/home/dagster.yaml" in dockerfile
    assert "DAGSTER_HOME=/opt/dagster/home" in dockerfile


def test_daemon_evaluates_the_retraining_sensor_and_the_daily_schedule(deployment):
    """Runs first: the every-minute schedule is stopped after its first tick, so its runs do not
    compete with the backfill and training runs of the next test on a loaded machine."""
    dep = deployment
    sensor = {**LOCATION, "sensorName": f"{FEED}__retrain_sensor"}
    schedule = {**LOCATION, "scheduleName": f"{FEED}__daily_schedule"}

    def sensor_ticks():
        result = dep.graphql(SENSOR_TICKS, {"selector": sensor})["sensorOrError"]
        if result["__typename"] != "Sensor":
            raise dep.fail(f"sensor {sensor['sensorName']}: {result}")
        return result["sensorState"]["ticks"]

    def schedule_ticks():
        result = dep.graphql(SCHEDULE_TICKS, {"selector": schedule})["scheduleOrError"]
        if result["__typename"] != "Schedule":
            raise dep.fail(f"schedule {schedule['scheduleName']}: {result}")
        return result["scheduleState"]

    ticks = dep.wait_until("a tick of the retraining sensor", sensor_ticks, 120)
    errors = [t["error"]["message"] for t in ticks if t["status"] == "FAILURE"]
    assert not errors, f"the retraining sensor's ticks failed: {errors}"
    # the cron is every minute: the first tick comes at the latest ~60 s after the daemon saw the schedule
    state = dep.wait_until("a tick of the daily schedule", lambda: (s := schedule_ticks())["ticks"] and s, 150)
    # its runs would only add load to the machine: stop it now that it has ticked
    dep.graphql(STOP_SCHEDULE, {"id": state["id"]})
    tick = state["ticks"][0]
    assert tick["status"] in ("SUCCESS", "STARTED"), f"schedule tick {tick}"
    assert time.time() - tick["timestamp"] < 600


def test_runs_launched_through_graphql_land_in_the_postgres_warehouse(deployment):
    dep = deployment
    start = time.monotonic()
    # the days arrive as one backfill, which the daemon's backfill loop turns into a run per day
    backfill = launch_backfill(dep, f"{FEED}__ingest", DAYS)
    dep.wait_until(f"backfill {backfill} to create a run per day",
                   lambda: backfill_made_runs(dep, backfill, len(DAYS)), RUN_TIMEOUT, interval=2.0)
    runs = backfill_runs(dep, backfill)
    wait_for_runs(dep, {f"ingest run {r['runId'][:8]}": r["runId"] for r in runs})
    runs = backfill_runs(dep, backfill)
    assert sorted(t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition") == DAYS
    ingested = time.monotonic()
    wait_for_runs(dep, {"train": launch(dep, f"{FEED}__train")})
    trained = time.monotonic()
    score_run = launch(dep, f"{FEED}__score", DAYS[-1])
    wait_for_runs(dep, {f"score {DAYS[-1]}": score_run})
    print(f"ingest {ingested - start:.0f} s, train {trained - ingested:.0f} s, score {time.monotonic() - trained:.0f} s")

    engine = sa.create_engine(dep.warehouse_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT partition_date::text, run_id, COUNT(*) FROM anomalies.anomaly_scores WHERE feed = :f "
                "GROUP BY partition_date, run_id"), {"f": FEED}).all()
    finally:
        engine.dispose()
    # 2 machines x 96 readings a day, all exported by the run launched through GraphQL
    assert [tuple(r) for r in rows] == [(DAYS[-1], score_run, 2 * 96)]
    # the training run registered its champion through the MLflow server, in its PostgreSQL backend
    mlflow_db = sa.create_engine(dep.mlflow_backend_url)
    try:
        with mlflow_db.connect() as conn:
            aliases = conn.execute(sa.text("SELECT name, alias FROM registered_model_aliases")).all()
    finally:
        mlflow_db.dispose()
    assert (f"pynomaly-{FEED}", "champion") in [tuple(a) for a in aliases]


def chromium_or_skip() -> str:
    """Debian's chromium; scripts/browser.sh installs it when missing (scripts/test.sh runs it first)."""
    if shutil.which("chromium") is None:
        installed = subprocess.run(["bash", str(REPO / "scripts" / "browser.sh")], capture_output=True, text=True,
                                   check=False, timeout=600)
        if shutil.which("chromium") is None:
            pytest.skip(f"chromium is not installed and scripts/browser.sh could not install it: "
                        f"{installed.stderr.strip()[-500:]}")
    return shutil.which("chromium")


def headless(browser: str, url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # --virtual-time-budget lets the UI's JavaScript fetch from GraphQL and render before the dump
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--window-size=1600,1000", "--virtual-time-budget=30000", *args, url],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.DOTALL)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_ui_lists_the_feeds_assets_and_draws_the_asset_graph_in_a_headless_browser(deployment, tmp_path):
    dep = deployment
    browser = chromium_or_skip()
    served = dep.http_get("/assets").decode()
    assert "anomaly_scores" not in served, "the catalog is rendered by the UI's JavaScript, not served as HTML"
    dumped = headless(browser, dep.webserver_url + "/assets", "--dump-dom")
    text = visible_text(dumped.stdout)
    missing = [stage for stage in STAGES if not re.search(rf"{FEED}\s*/\s*{stage}\b", text)]
    assert not missing, f"the asset catalog does not list {missing}; page text: {text[:2000]}\n{dumped.stderr[-2000:]}"

    target = SCREENSHOT if os.environ.get(UPDATE_SCREENSHOT_ENV) else tmp_path / "asset_graph.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shot = headless(browser, dep.webserver_url + "/asset-groups", f"--screenshot={target}")
    assert shot.returncode == 0 and target.exists(), f"chromium --screenshot failed: {shot.stderr[-2000:]}"
    png = Path(target).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1600, 1000)
