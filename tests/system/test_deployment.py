"""The production deployment as real processes: gRPC code server, dagster-webserver, dagster-daemon,
the MLflow server with its basic-auth app, and the authenticating reverse proxy (nginx) in front.

Commands come from docker/docker-compose.yml, the instance is docker/dagster.yaml on a fresh
PostgreSQL database, the workspace is docker/workspace.yaml; the warehouse, the MLflow server's
backend store and its users and permissions are three more fresh PostgreSQL databases. Runs are
launched through the proxy (with the UI's credentials) on the webserver's GraphQL API and dequeued
by the daemon's run queue, exactly as in production; the code server's runs log to MLflow as the
non-admin user the one-shot mlflow_users service creates.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.assets.helpers import SMALL_DEMO, write_feed
from tests.browser import Chromium, chromium_or_skip, visible_text
from tests.pg import temporary_database
from tests.system.services import (
    COMPOSE_FILE,
    INSTANCE_PROFILE,
    REPO,
    VENV_BIN,
    Deployment,
    basic_auth,
    compose_commands,
    free_port,
    interpolate,
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
# the deployment's credentials (docker/.env in production); MLflow wants passwords of 12+ characters
UI_USER = ("admin", "system-test-ui-password")
MLFLOW_ADMIN = ("admin", "system-test-mlflow-admin")
MLFLOW_USER = ("pynomaly", "system-test-mlflow-pynomaly")
WRONG_PASSWORD = "not-the-password"
# the proxy forwards to the services by their compose names; locally they are all on loopback
UPSTREAM_OPTIONS = ("--dagster-upstream", "--mlflow-upstream", "--review-upstream")
MLFLOW_SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
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
STAGES = (
    "raw",
    "validated",
    "training_window",
    "detector_candidates",
    "champion",
    "anomaly_scores",
    "explanations",
    "anomaly_table",
)
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


def require_proxy() -> None:
    """Debian's nginx and openssl for the proxy; scripts/proxy.sh installs them when missing
    (scripts/test.sh runs it first). No skip: without its proxy the deployment is not the one compose runs."""
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return
    installed = subprocess.run(
        ["bash", str(REPO / "scripts" / "proxy.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if installed.returncode != 0:
        pytest.fail(
            f"the proxy's nginx is not installed and scripts/proxy.sh could not install it: "
            f"{installed.stderr.strip()[-1000:]}"
        )


def on_loopback(commands: dict[str, list[str]]) -> None:
    """The services listen on all interfaces in their containers and the proxy reaches the others by
    their compose names; locally, everything is on 127.0.0.1 (the ports stay the compose file's)."""
    for argv in commands.values():
        for i, arg in enumerate(argv[:-1]):
            if arg in ("-h", "--host") and argv[i + 1] == "0.0.0.0":
                argv[i + 1] = "127.0.0.1"
            elif arg in UPSTREAM_OPTIONS:
                argv[i + 1] = "127.0.0.1:" + argv[i + 1].rsplit(":", 1)[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    feeds = root / "feeds"
    write_feed(feeds, SYSTEM_FEED)
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(INSTANCE_PROFILE, dagster_home / "dagster.yaml")
    (root / "logs").mkdir()
    require_proxy()
    code_port, web_port, mlflow_port, ui_port, public_mlflow_port = (free_port() for _ in range(5))
    # nginx's workers (www-data when the test runs as root) read the htpasswd file in here: not under
    # pytest's private temporary root
    proxy_run_dir = tempfile.mkdtemp(prefix="pynomaly-proxy-")
    with (
        temporary_database("pynomaly_sys_dagster") as dagster_url,
        temporary_database("pynomaly_sys_wh") as warehouse_url,
        temporary_database("pynomaly_sys_mlflow") as mlflow_url,
        temporary_database("pynomaly_sys_mlflow_auth") as mlflow_auth_url,
    ):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYNOMALY_", "DAGSTER_", "MLFLOW_", "PROXY_"))
        }
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "DAGSTER_HOME": str(dagster_home),
                "PYNOMALY_DAGSTER_PG_URL": dagster_url.replace(
                    "postgresql+psycopg://", "postgresql+psycopg2://"
                ),
                "PYNOMALY_DAGSTER_STORAGE": str(root / "dagster_storage"),
                "PYNOMALY_CODE_SERVER_HOST": "127.0.0.1",
                "PYNOMALY_CODE_SERVER_PORT": str(code_port),
                "PYNOMALY_HOME": str(root / "pynomaly_home"),
                "PYNOMALY_FEEDS_DIR": str(feeds),
                "PYNOMALY_WAREHOUSE_URL": warehouse_url,
                "PYNOMALY_WAREHOUSE_SCHEMA": "anomalies",
                "PYNOMALY_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
                "MLFLOW_BACKEND_STORE_URI": mlflow_url.replace(
                    "postgresql+psycopg://", "postgresql+psycopg2://"
                ),
                "PYNOMALY_SIGNING_KEY": "system-test-signing-key",
                "MLFLOW_LOGGING_LEVEL": "WARNING",
                # MLflow's basic-auth app (docker/mlflow/auth.py writes its config) and its users
                "MLFLOW_AUTH_DATABASE_URI": mlflow_auth_url.replace(
                    "postgresql+psycopg://", "postgresql+psycopg2://"
                ),
                "MLFLOW_AUTH_CONFIG_PATH": str(root / "mlflow_auth" / "basic_auth.ini"),
                "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_ADMIN[0],
                "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_ADMIN[1],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "system-test-flask-secret",
                "MLFLOW_TRACKING_USERNAME": MLFLOW_USER[0],
                "MLFLOW_TRACKING_PASSWORD": MLFLOW_USER[1],
                # the proxy
                "DAGSTER_UI_USERNAME": UI_USER[0],
                "DAGSTER_UI_PASSWORD": UI_USER[1],
                "PROXY_RUN_DIR": proxy_run_dir,
            }
        )
        commands = compose_commands(
            {
                "PYNOMALY_CODE_SERVER_PORT": str(code_port),
                "PYNOMALY_WEBSERVER_PORT": str(web_port),
                "MLFLOW_SERVER_PORT": str(mlflow_port),
                "PROXY_DAGSTER_PORT": str(ui_port),
                "PROXY_MLFLOW_PORT": str(public_mlflow_port),
                # the review page's proxy port too: never the default 3100 another test may hold
                "PROXY_REVIEW_PORT": str(free_port()),
                "PYNOMALY_REVIEW_PORT": str(free_port()),
                "MLFLOW_ARTIFACTS_DESTINATION": str(root / "mlflow_artifacts"),
            }
        )
        on_loopback(commands)
        dep = Deployment(
            env=env,
            log_dir=root / "logs",
            webserver_url=f"http://127.0.0.1:{ui_port}",
            auth=UI_USER,
            mlflow_url=f"http://127.0.0.1:{public_mlflow_port}",
            mlflow_server_url=f"http://127.0.0.1:{mlflow_port}",
        )
        try:
            # MLflow migrates its fresh databases while the code server loads the definitions
            dep.start("mlflow", commands["mlflow"])
            dep.start("code_server", commands["code_server"])
            dep.wait_until(
                "the code server's gRPC health check",
                lambda: (
                    subprocess.run(
                        [
                            str(VENV_BIN / "dagster"),
                            "api",
                            "grpc-health-check",
                            "-p",
                            str(code_port),
                            "-h",
                            "127.0.0.1",
                        ],
                        check=False,
                        env=env,
                        capture_output=True,
                        timeout=30,
                    ).returncode
                    == 0
                ),
                STARTUP_TIMEOUT,
                interval=2.0,
            )
            dep.wait_until(
                "MLflow's /health",
                lambda: dep.http_get_url(f"{dep.mlflow_server_url}/health") == b"OK",
                STARTUP_TIMEOUT,
            )
            # compose starts the code server once this one-shot has completed; its runs need the user
            dep.run_once("mlflow_users", commands["mlflow_users"], STARTUP_TIMEOUT)
            dep.start("webserver", commands["webserver"])
            dep.start("daemon", commands["daemon"])
            dep.start("proxy", commands["proxy"])
            dep.wait_until(
                "the webserver's /server_info through the proxy",
                lambda: b"dagster_webserver_version" in dep.http_get("/server_info"),
                STARTUP_TIMEOUT,
            )
            entries = dep.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            loaded = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
            if loaded != {"pynomaly": "RepositoryLocation"}:
                raise dep.fail(
                    f"workspace docker/workspace.yaml did not load the code location: {entries}"
                )
            dep.warehouse_url, dep.mlflow_backend_url = warehouse_url, mlflow_url
            yield dep
        finally:
            dep.stop_all()
            shutil.rmtree(proxy_run_dir, ignore_errors=True)
            # runs started from the code server live in its process group and are gone too
            if dep.services and any(
                s.process.returncode not in (0, -15, 143, None) for s in dep.services.values()
            ):
                print(dep.logs())


# one process per run (the in_process executor): the multiprocess default would start a process
# per step, which only costs time on the test machine's two cores
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def launch(dep: Deployment, job: str, partition: str | None = None) -> str:
    tags = [{"key": "dagster/partition", "value": partition}] if partition else []
    params = {
        "selector": {**LOCATION, "jobName": job},
        "runConfigData": IN_PROCESS,
        "executionMetadata": {"tags": tags},
    }
    result = dep.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise dep.fail(f"launchRun {job} [{partition}] returned {result}")
    return result["run"]["runId"]


def launch_backfill(dep: Deployment, job: str, partitions: list[str]) -> str:
    params = {
        "selector": {
            "partitionSetName": f"{job}_partition_set",
            "repositorySelector": {
                "repositoryName": LOCATION["repositoryName"],
                "repositoryLocationName": LOCATION["repositoryLocationName"],
            },
        },
        "partitionNames": partitions,
        "runConfigData": IN_PROCESS,
    }
    result = dep.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise dep.fail(f"launchPartitionBackfill {job} {partitions} returned {result}")
    return result["backfillId"]


def backfill_made_runs(dep: Deployment, backfill_id: str, count: int) -> bool:
    """True once the backfill has a run per partition; fails at once (with its error) if the daemon failed it."""
    state = dep.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if state.get("status") in ("FAILED", "FAILING", "CANCELED", "CANCELING"):
        raise dep.fail(
            f"backfill {backfill_id} is {state['status']}: {(state.get('error') or {}).get('message')}"
        )
    return len(backfill_runs(dep, backfill_id)) == count


def backfill_runs(dep: Deployment, backfill_id: str) -> list[dict]:
    result = dep.graphql(
        BACKFILL_RUNS, {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}
    )["runsOrError"]
    if result["__typename"] != "Runs":
        raise dep.fail(f"runs of backfill {backfill_id}: {result}")
    return result["results"]


def wait_for_runs(dep: Deployment, run_ids: dict[str, str]) -> None:
    """Wait until every run is terminal; fail naming each run that did not succeed, with its errors."""
    statuses: dict[str, str] = {}

    def all_done() -> bool:
        for label, run_id in run_ids.items():
            statuses[label] = dep.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get(
                "status", "?"
            )
        return all(s in TERMINAL for s in statuses.values())

    dep.wait_until(
        f"runs {list(run_ids)} to finish (last statuses {statuses})",
        all_done,
        RUN_TIMEOUT,
        interval=2.0,
    )
    failed = {label: s for label, s in statuses.items() if s != "SUCCESS"}
    if failed:
        details = []
        for label in failed:
            events = dep.graphql(RUN_FAILURES, {"runId": run_ids[label]})["logsForRun"].get(
                "events", []
            )
            details += [
                f"{label}: {e.get('stepKey', '')} {e.get('message') or (e.get('error') or {}).get('message')}"
                for e in events
                if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
            ]
        raise dep.fail(f"runs did not succeed: {failed}\n" + "\n".join(details))


def test_compose_services_use_the_production_profile_and_grpc_workspace():
    commands = compose_commands({})
    assert commands["code_server"][:5] == [
        "dagster",
        "code-server",
        "start",
        "-m",
        "pynomaly_assets.definitions",
    ]
    for name in ("webserver", "daemon"):
        workspace = commands[name][commands[name].index("-w") + 1]
        loaded = yaml.safe_load((REPO / workspace).read_text())["load_from"]
        assert [list(entry) for entry in loaded] == [["grpc_server"]], (
            f"{name}: {workspace} must load a gRPC server"
        )
    dockerfile = (COMPOSE_FILE.parent / "Dockerfile").read_text()
    assert "COPY docker/dagster.yaml /opt/dagster/home/dagster.yaml" in dockerfile
    assert "DAGSTER_HOME=/opt/dagster/home" in dockerfile


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_compose_publishes_only_the_authenticating_proxy_and_keeps_secrets_off_command_lines():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]
    for override in (REPO / "deploy").glob("*/docker-compose.*.yml"):
        published = [
            name
            for name, s in yaml.safe_load(override.read_text())["services"].items()
            if s.get("ports")
        ]
        assert not published, f"{override} publishes ports of {published}: only docker/proxy may"
    commands = compose_commands({})
    assert option(commands["mlflow"], "--app-name") == "basic-auth"
    proxy = commands["proxy"]
    # the proxy forwards to the webserver and MLflow where compose runs them ...
    assert option(proxy, "--dagster-upstream") == f"webserver:{option(commands['webserver'], '-p')}"
    assert option(proxy, "--mlflow-upstream") == f"mlflow:{option(commands['mlflow'], '--port')}"
    # ... and publishes exactly the ports it listens on
    ports = {interpolate(port, {}).split(":")[-1] for port in services["proxy"]["ports"]}
    assert ports == {option(proxy, f"--{ui}-port") for ui in ("dagster", "mlflow", "review")}
    # `ps` shows command lines: passwords and keys come from the environment only
    for name, service in services.items():
        variables = re.findall(r"\$\{(\w+)", " ".join(map(str, service.get("command", []))))
        secret = [v for v in variables if re.search("PASSWORD|SECRET|KEY", v)]
        assert not secret, f"service {name}'s command holds {secret}"


def expect_status(
    dep: Deployment,
    expected: int,
    url: str,
    auth: tuple[str, str] | None = None,
    data: bytes | None = None,
) -> bytes:
    """One request that must answer ``expected`` (a 401 with a Basic challenge); fails with the
    services' logs otherwise. Returns the body."""
    headers = {"Content-Type": "application/json"} if data is not None else None
    status, answered, body = dep.http_request(url, auth=auth, data=data, headers=headers)
    who = f"user {auth[0]!r}" if auth else "anonymous"
    if status != expected:
        raise dep.fail(
            f"{'POST' if data is not None else 'GET'} {url} as {who} answered {status}, not {expected}: "
            f"{body[:500]!r}"
        )
    if status == 401 and not answered.get("www-authenticate", "").startswith("Basic"):
        raise dep.fail(f"{url} as {who}: 401 without a Basic challenge: {answered}")
    return body


def test_ui_and_mlflow_refuse_anonymous_access(deployment):
    """The Dagster UI (through the proxy's basic auth) and MLflow (its basic-auth app, through the
    proxy and at the server itself) answer 401 without credentials or with a wrong password, 200
    with them; the UI's GraphQL websocket passes the proxy only with credentials."""
    dep = deployment
    for path in ("/", "/server_info", "/assets"):
        expect_status(dep, 401, dep.webserver_url + path)
        expect_status(dep, 401, dep.webserver_url + path, auth=(UI_USER[0], WRONG_PASSWORD))
        expect_status(dep, 200, dep.webserver_url + path, auth=UI_USER)
    query = json.dumps({"query": "{ version }"}).encode()
    expect_status(dep, 401, dep.webserver_url + "/graphql", data=query)
    answer = json.loads(
        expect_status(dep, 200, dep.webserver_url + "/graphql", auth=UI_USER, data=query)
    )
    assert answer["data"]["version"], answer

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    socket_url = dep.webserver_url.replace("http://", "ws://") + "/graphql"
    with pytest.raises(InvalidStatus) as refused:
        connect(socket_url, subprotocols=["graphql-ws"], open_timeout=30).close()
    assert refused.value.response.status_code == 401
    with connect(
        socket_url,
        subprotocols=["graphql-ws"],
        open_timeout=30,
        additional_headers={"Authorization": basic_auth(UI_USER)},
    ) as socket:
        socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(socket.recv(timeout=30))["type"] == "connection_ack"

    # published (through the proxy) and at the server itself: no anonymous path to the data
    for base in (dep.mlflow_url, dep.mlflow_server_url):
        for path in (MLFLOW_SEARCH, "/"):
            expect_status(dep, 401, base + path)
            expect_status(dep, 401, base + path, auth=(MLFLOW_USER[0], WRONG_PASSWORD))
            for user in (MLFLOW_USER, MLFLOW_ADMIN):
                expect_status(dep, 200, base + path, auth=user)
    # the code server's MLflow user is no admin: another user's account is not its business
    expect_status(
        dep,
        403,
        f"{dep.mlflow_url}/api/2.0/mlflow/users/get?username={MLFLOW_ADMIN[0]}",
        auth=MLFLOW_USER,
    )


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
    state = dep.wait_until(
        "a tick of the daily schedule", lambda: (s := schedule_ticks())["ticks"] and s, 150
    )
    # its runs would only add load to the machine: stop it now that it has ticked
    dep.graphql(STOP_SCHEDULE, {"id": state["id"]})
    tick = state["ticks"][0]
    assert tick["status"] in ("SUCCESS", "STARTED"), f"schedule tick {tick}"
    assert time.time() - tick["timestamp"] < 600


def test_runs_launched_through_graphql_land_in_the_postgres_warehouse(deployment):
    dep = deployment
    start = time.monotonic()
    # the days arrive as one backfill; raw and validated have a single-run backfill policy, so the
    # daemon's backfill loop makes ONE run over the range of days (not a run per day)
    backfill = launch_backfill(dep, f"{FEED}__ingest", DAYS)
    dep.wait_until(
        f"backfill {backfill} to create one run over its days",
        lambda: backfill_made_runs(dep, backfill, 1),
        RUN_TIMEOUT,
        interval=2.0,
    )
    runs = backfill_runs(dep, backfill)
    wait_for_runs(dep, {f"ingest run {r['runId'][:8]}": r["runId"] for r in runs})
    (run,) = backfill_runs(dep, backfill)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (
        tags["dagster/asset_partition_range_start"],
        tags["dagster/asset_partition_range_end"],
    ) == (DAYS[0], DAYS[-1])
    ingested = time.monotonic()
    wait_for_runs(dep, {"train": launch(dep, f"{FEED}__train")})
    trained = time.monotonic()
    score_run = launch(dep, f"{FEED}__score", DAYS[-1])
    wait_for_runs(dep, {f"score {DAYS[-1]}": score_run})
    print(
        f"ingest {ingested - start:.0f} s, train {trained - ingested:.0f} s, score {time.monotonic() - trained:.0f} s"
    )

    engine = sa.create_engine(dep.warehouse_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT partition_date::text, run_id, COUNT(*) FROM anomalies.anomaly_scores WHERE feed = :f "
                    "GROUP BY partition_date, run_id"
                ),
                {"f": FEED},
            ).all()
    finally:
        engine.dispose()
    # 2 machines x 96 readings a day, all exported by the run launched through GraphQL
    assert [tuple(r) for r in rows] == [(DAYS[-1], score_run, 2 * 96)]
    # the training run registered its champion through the MLflow server, in its PostgreSQL backend
    mlflow_db = sa.create_engine(dep.mlflow_backend_url)
    try:
        with mlflow_db.connect() as conn:
            aliases = conn.execute(
                sa.text("SELECT name, alias FROM registered_model_aliases")
            ).all()
    finally:
        mlflow_db.dispose()
    assert (f"pynomaly-{FEED}", "champion") in [tuple(a) for a in aliases]


def missing_stages(text: str) -> list[str]:
    return [stage for stage in STAGES if not re.search(rf"{FEED}\s*/\s*{stage}\b", text)]


def until_rendered(page: Chromium, shows: Callable[[str], bool], timeout: float = 120) -> str:
    """The page's visible text once ``shows`` accepts it (the UI renders after its GraphQL
    queries), or the last text after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        text = visible_text(page.html())
        if shows(text) or time.monotonic() > deadline:
            return text
        time.sleep(1.0)


def test_ui_lists_the_feeds_assets_and_draws_the_asset_graph_in_a_headless_browser(
    deployment, tmp_path
):
    dep = deployment
    browser = chromium_or_skip()
    served = dep.http_get("/assets").decode()
    assert "anomaly_scores" not in served, (
        "the catalog is rendered by the UI's JavaScript, not served as HTML"
    )
    page = Chromium(browser, tmp_path / "chromium", basic_auth(dep.auth))
    try:
        page.open(dep.webserver_url + "/assets")
        text = until_rendered(page, lambda text: not missing_stages(text))
        missing = missing_stages(text)
        assert not missing, (
            f"the asset catalog does not list {missing}; page text: {text[:2000]}\n{page.log_tail()}"
        )

        page.open(dep.webserver_url + "/asset-groups")
        text = until_rendered(page, lambda text: all(stage in text for stage in STAGES))
        assert all(stage in text for stage in STAGES), (
            f"the asset graph did not render: {text[:2000]}"
        )
        time.sleep(3)  # the graph's layout settles (zoom to fit) after its nodes appear
        png = page.screenshot()
    finally:
        page.close()
    target = SCREENSHOT if os.environ.get(UPDATE_SCREENSHOT_ENV) else tmp_path / "asset_graph.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1600, 1000)


def test_mlflow_users_grants_the_pynomaly_user_what_predates_authentication(deployment):
    """An upgraded stack: what Pynomaly created in MLflow before it had users has no owner, and the
    default permission (READ) would refuse the runs' writes. Each start of mlflow_users grants the
    pynomaly user MANAGE on Pynomaly's experiments and models (only those), and leaves alone what
    it owns already."""
    dep = deployment
    api = dep.mlflow_server_url + "/api/2.0/mlflow"
    suffix = uuid.uuid4().hex[:8]

    def call(endpoint: str, body: dict, user: tuple[str, str], expected: int = 200) -> dict:
        answer = expect_status(
            dep, expected, f"{api}/{endpoint}", auth=user, data=json.dumps(body).encode()
        )
        return json.loads(answer or b"{}") if expected == 200 else {}

    legacy, other = (
        call("experiments/create", {"name": name}, MLFLOW_ADMIN)["experiment_id"]
        for name in (f"pynomaly/legacy_{suffix}", f"other/legacy_{suffix}")
    )
    model = f"pynomaly-legacy_{suffix}"
    call("registered-models/create", {"name": model}, MLFLOW_ADMIN)
    tag = {"name": model, "key": "pynomaly/test", "value": suffix}
    call("runs/create", {"experiment_id": legacy}, MLFLOW_USER, expected=403)
    call("registered-models/set-tag", tag, MLFLOW_USER, expected=403)

    output = dep.run_once("mlflow_users", compose_commands({})["mlflow_users"], STARTUP_TIMEOUT)
    assert f"granted 'pynomaly' MANAGE on experiment 'pynomaly/legacy_{suffix}'" in output, output
    assert f"granted 'pynomaly' MANAGE on registered_model '{model}'" in output, output
    assert f"'pynomaly/{FEED}'" not in output, (
        f"the feed's own experiment was granted again: {output}"
    )
    call("runs/create", {"experiment_id": legacy}, MLFLOW_USER)
    call("registered-models/set-tag", tag, MLFLOW_USER)
    call("runs/create", {"experiment_id": other}, MLFLOW_USER, expected=403)


def run_auth_script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "python"), str(REPO / "docker" / "mlflow" / "auth.py"), *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_mlflow_auth_config_comes_from_the_environment_and_is_private(tmp_path):
    """What `auth.py serve` writes is what MLflow's own reader makes of it: the database URI intact
    (a %-encoded password survives configparser), the admin from the environment, mode 0600."""
    config = tmp_path / "auth" / "basic_auth.ini"
    database_uri = "postgresql+psycopg2://mlflow:p%40ss%25word@db:5432/mlflow_auth"
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_DATABASE_URI": database_uri,
        "MLFLOW_AUTH_ADMIN_USERNAME": "root-of-mlflow",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-1",
    }
    read_back = (
        "import json; from mlflow.server.auth.config import read_auth_config; "
        "print(json.dumps(read_auth_config()._asdict()))"
    )
    done = run_auth_script(["serve", str(VENV_BIN / "python"), "-c", read_back], env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["database_uri"] == database_uri
    assert (seen["default_permission"], seen["admin_username"], seen["admin_password"]) == (
        "READ",
        "root-of-mlflow",
        "admin-password-1",
    )
    assert "admin-password-1" not in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600

    refused = run_auth_script(
        ["serve", "true"], {**env, "MLFLOW_AUTH_DEFAULT_PERMISSION": "EVERYTHING"}
    )
    assert (
        refused.returncode == 2 and "MLFLOW_AUTH_DEFAULT_PERMISSION='EVERYTHING'" in refused.stderr
    )
    missing = run_auth_script(
        ["serve", "true"], {k: v for k, v in env.items() if k != "MLFLOW_AUTH_DATABASE_URI"}
    )
    assert missing.returncode == 2 and "MLFLOW_AUTH_DATABASE_URI is not set" in missing.stderr


class EchoHeaders(http.server.BaseHTTPRequestHandler):
    """An upstream that answers every request with the headers it received."""

    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_proxy_speaks_https_with_a_certificate_and_takes_more_ui_users_from_an_htpasswd_file(
    tmp_path,
):
    """TLS as docs/deploy.md sets it up (PROXY_TLS_CERT/KEY), against stand-in upstreams: the UI port
    asks for basic auth and keeps the password from the webserver, the MLflow port leaves
    authentication (and the Authorization header) to MLflow; plain HTTP is refused."""
    require_proxy()
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    alice = ("alice", "alice-password")
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=alice[1] + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    users = tmp_path / "users.htpasswd"
    users.write_text(f"# more UI users\n{alice[0]}:{hashed}\n")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    ui_port, mlflow_port, upstream_port = free_port(), free_port(), upstream.server_address[1]
    run_dir = tempfile.mkdtemp(prefix="pynomaly-proxy-")
    env = {
        "PATH": os.environ["PATH"],
        "DAGSTER_UI_PASSWORD": UI_USER[1],
        "DAGSTER_UI_HTPASSWD": str(users),
        "PROXY_TLS_CERT": str(cert),
        "PROXY_TLS_KEY": str(key),
        "PROXY_RUN_DIR": run_dir,
    }
    command = compose_commands(
        {
            "PROXY_DAGSTER_PORT": str(ui_port),
            "PROXY_MLFLOW_PORT": str(mlflow_port),
            # free ports for the review page's server block: the module's stack holds its own
            "PROXY_REVIEW_PORT": str(free_port()),
            "PYNOMALY_REVIEW_PORT": str(upstream_port),
            "PYNOMALY_WEBSERVER_PORT": str(upstream_port),
            "MLFLOW_SERVER_PORT": str(upstream_port),
        }
    )["proxy"]
    on_loopback({"proxy": command})
    (tmp_path / "logs").mkdir()
    dep = Deployment(
        env=env, log_dir=tmp_path / "logs", webserver_url=f"https://127.0.0.1:{ui_port}"
    )
    tls = ssl.create_default_context(cafile=str(cert))

    def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, dict]:
        headers = {"Authorization": basic_auth(auth)} if auth else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=30, context=tls
            ) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    try:
        dep.start("proxy", command)
        dep.wait_until(
            "the proxy's TLS port", lambda: get(dep.webserver_url)[0] == 401, 60, interval=0.5
        )
        assert get(dep.webserver_url, (UI_USER[0], WRONG_PASSWORD))[0] == 401
        for user in (UI_USER, alice):
            status, seen = get(dep.webserver_url + "/server_info", user)
            assert status == 200, user[0]
            assert "authorization" not in seen and seen["x-forwarded-proto"] == "https", seen
        mlflow = f"https://127.0.0.1:{mlflow_port}/api/2.0/mlflow/experiments/search"
        status, seen = get(mlflow, MLFLOW_USER)
        assert status == 200 and seen["authorization"] == basic_auth(MLFLOW_USER), seen
        assert seen["host"] == f"127.0.0.1:{upstream_port}", (
            "MLflow checks the Host against its --allowed-hosts"
        )
        with pytest.raises(urllib.error.HTTPError) as plain:
            urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=30)
        assert plain.value.code == 400
        dep.check_alive()
    finally:
        dep.stop_all()
        upstream.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
