"""Bug 12 (#13): a warehouse restart during a run costs a retry of the export step, not the run.

The warehouse is a PostgreSQL cluster of its own, created for this test with ``initdb`` on a free
port and stopped/started with ``pg_ctl``: the shared server at 127.0.0.1:5432 that other tests use
in parallel is never touched. The Dagster instance is the local SQLite profile (./dagster.yaml),
with a real gRPC code server and a real ``dagster-daemon`` that dequeues the run, as in
``dagster dev``.

The feed is trained in-process first. Then the warehouse is stopped and a score run is launched
through the run queue: its ``anomaly_table`` step fails to connect, the feed's ``retries`` policy
(exponential backoff with jitter) puts it up for retry, the test starts PostgreSQL again while the
run waits, and the retried step writes the day. The run succeeds and the table holds each scored
row exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.assets.helpers import (
    definitions_for,
    failure_message,
    run_job,
    run_range,
    seed_mlflow,
    write_feed,
)
from tests.system.services import REPO, VENV_BIN, Deployment, free_port, grpc_healthy

pytestmark = pytest.mark.system

NAME = "retry_csv"
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
SCORED_DAY = DAYS[-1]
ROWS = 48
FEED = {
    "name": NAME,
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "features": [{"name": "temp", "type": "float"}, {"name": "load", "type": "float"}],
    "partitioning": {"start_date": DAYS[0]},
    "validation": {"min_rows": 1},
    "training": {"window_days": 2, "min_rows": 20},
    "detector": {"name": "KNN", "contamination": 0.05},
    "lifecycle": {"candidates": ["KNN"], "n_boot": 100, "synthetic_anomalies": 20},
    # first retry after 1 s, then 2, 4, 8 ... : PostgreSQL is back long before they run out
    "retries": {"max_retries": 6, "delay_seconds": 1.0, "jitter": True},
}
LOCATION = "pynomaly"
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 240
PG_BIN = Path("/usr/lib/postgresql")


def pg_tool(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl), from PATH or the Debian layout."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not candidates:
        pytest.skip(f"{name} is not installed: this test runs its own PostgreSQL cluster")
    return str(candidates[-1])


def as_cluster_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run the server tools as user postgres."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        # not under pytest's tmp_path: user postgres must be able to reach it
        self.root = Path(tempfile.mkdtemp(prefix="pynomaly_pg_"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([pg_tool("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            as_cluster_owner(argv), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}: {done.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [
                pg_tool("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "log"),
                "-w",
                "start",
            ]
        )

    def stop(self) -> None:
        self._run([pg_tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def destroy(self) -> None:
        subprocess.run(
            as_cluster_owner([pg_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster():
    pg = Cluster()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


def day_rows(day: str) -> str:
    return "id,ts,temp,load\n" + "".join(
        f"{day}-{i},{day}T{i % 24:02d}:{i % 60:02d}:00Z,{20 + i % 7}.5,{1 + (i * 7) % 11}.0\n"
        for i in range(ROWS)
    )


def run_story(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's step events with their times, for a failure message."""
    logs = instance.all_logs(run_id)
    start = logs[0].timestamp if logs else 0.0
    return "\n".join(
        f"{e.timestamp - start:7.1f}s {e.step_key or '-'} {e.dagster_event.event_type_value}: "
        f"{(e.message or '')[:400]}"
        for e in logs
        if e.dagster_event is not None and (e.step_key or e.dagster_event.is_run_failure)
    )


def error_chain(error) -> str:
    """The messages of a serialized error and its causes (the retry policy wraps the real one)."""
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause or error.context
    return "\n".join(parts)


def step_events(instance: dg.DagsterInstance, run_id: str, step: str) -> list[str]:
    return [
        e.dagster_event.event_type_value
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.step_key == step
    ]


def test_export_retries_through_a_warehouse_restart_and_the_table_is_exact(
    cluster, tmp_path, monkeypatch, isolated_home
):
    seed_mlflow(isolated_home)
    feeds = tmp_path / "feeds"
    write_feed(feeds, FEED)
    (feeds / "landing").mkdir()
    for day in DAYS:
        (feeds / "landing" / f"{day}.csv").write_text(day_rows(day))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    (tmp_path / "logs").mkdir()
    settings = {
        "DAGSTER_HOME": str(dagster_home),
        "PYNOMALY_FEEDS_DIR": str(feeds),
        "PYNOMALY_WAREHOUSE_URL": cluster.url,
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)  # the in-process runs below use the same stores
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update({**settings, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"})

    # ingest and train in-process on the deployment's instance (fast; not what is under test)
    phases: dict[str, float] = {}
    clock = time.monotonic()
    defs = definitions_for(feeds)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    dep = Deployment(env=env, log_dir=tmp_path / "logs", webserver_url="")
    try:
        ingest = run_range(defs, instance, f"{NAME}__ingest", DAYS[0], DAYS[-1])
        assert ingest.success, failure_message(ingest)
        train = run_job(
            defs,
            instance,
            f"{NAME}__train",
            run_config={"ops": {f"{NAME}__training_window": {"config": {"end_date": DAYS[1]}}}},
        )
        assert train.success, failure_message(train)
        phases["ingest+train"] = round(time.monotonic() - clock, 1)

        port = free_port()
        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(
            json.dumps(
                {
                    "load_from": [
                        {
                            "grpc_server": {
                                "host": "127.0.0.1",
                                "port": port,
                                "location_name": LOCATION,
                            }
                        }
                    ]
                }
            )
        )
        dep.start(
            "code_server",
            [
                "dagster",
                "code-server",
                "start",
                "-m",
                "pynomaly_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--location-name",
                LOCATION,
            ],
        )
        dep.start("daemon", ["dagster-daemon", "run", "-w", str(workspace)])
        dep.wait_until(
            "the code server's gRPC health check",
            lambda: grpc_healthy(port, env),
            STARTUP_TIMEOUT,
            interval=2.0,
        )

        phases["services"] = round(time.monotonic() - clock - phases["ingest+train"], 1)
        cluster.stop()  # the warehouse goes down before the export step first runs
        run_id = str(uuid.uuid4())
        launched = subprocess.run(
            [
                str(VENV_BIN / "dagster"),
                "job",
                "launch",
                "-w",
                str(workspace),
                "-j",
                f"{NAME}__score",
                "--tags",
                json.dumps({"dagster/partition": SCORED_DAY}),
                "--run-id",
                run_id,
                # one process: the steps' order does not matter here, the start-up time does
                "--config-json",
                json.dumps({"execution": {"config": {"in_process": {}}}}),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert launched.returncode == 0, launched.stderr[-3000:]

        export = f"{NAME}__anomaly_table"

        def export_up_for_retry() -> bool:
            if instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE:
                raise dep.fail(f"run {run_id} failed:\n{run_story(instance, run_id)}")
            return "STEP_UP_FOR_RETRY" in step_events(instance, run_id, export)

        dep.wait_until(
            "the export step to fail on the stopped warehouse and be put up for retry",
            export_up_for_retry,
            RUN_TIMEOUT,
            interval=0.5,
        )
        cluster.start()  # back while the run waits for the retry
        dep.wait_until(
            "the run to finish",
            lambda: (
                instance.get_run_by_id(run_id).status
                in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
            ),
            RUN_TIMEOUT,
            interval=0.5,
        )
        events = step_events(instance, run_id, export)
        story = run_story(instance, run_id)
        print(f"phases (s): {phases}\n{story}")
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS, story
        assert events.count("STEP_RESTARTED") >= 1 and events[-1] == "STEP_SUCCESS", events
        # what put the step up for retry: the refused connection to the stopped warehouse
        errors = [
            error_chain(e.dagster_event.event_specific_data.error)
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
            if e.step_key == export
        ]
        assert errors and all("OperationalError" in m and str(cluster.port) in m for m in errors), (
            errors
        )

        engine = sa.create_engine(cluster.url)
        with engine.connect() as conn:
            rows, keys, runs = conn.execute(
                sa.text(
                    "SELECT COUNT(*), COUNT(DISTINCT record_key), COUNT(DISTINCT run_id) "
                    "FROM anomaly_scores WHERE feed = :f AND partition_date = :d"
                ),
                {"f": NAME, "d": SCORED_DAY},
            ).one()
        engine.dispose()
        assert (rows, keys, runs) == (ROWS, ROWS, 1)
    finally:
        dep.stop_all()
        instance.dispose()
