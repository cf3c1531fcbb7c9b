"""Crashed runs on the LOCAL instance profile (./dagster.yaml, as `bash scripts/dev.sh` uses it).

A real gRPC code server (``dagster code-server start``) and a real ``dagster-daemon run`` on a SQLite
DAGSTER_HOME; runs are launched with ``dagster job launch`` against a gRPC workspace, queued, and
dequeued by the daemon into the code server, as in ``dagster dev``.

The feed is the small demo feed read from a CSV file, except that the day under test is a named
pipe: the ``raw`` step blocks reading it until the test writes the day's rows, so the test kills
processes exactly mid-step, with no test hook in the product code.

What the tests pin down (docs/operations.md, "Crashed runs"):

* SIGKILL of the run worker: the code server that started it marks the run FAILURE within a
  second, naming the signal. The multiprocess executor's step subprocess is not killed with it: it
  keeps running and commits its output (Parquet file, materialization, STEP_SUCCESS) into the
  failed run. Re-running the partition is exact because every write replaces the partition (one
  Parquet file per partition, renamed into place; the day's quarantine rows deleted and inserted in
  one transaction).
* SIGKILL of the code server with its runs (a crash, a closed terminal): nobody is left to report
  the run, which stays STARTED; the daemon's run monitoring (enabled in ./dagster.yaml) fails it
  once it exceeds its maximum runtime.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.storage import FrameStore
from tests.assets.helpers import SMALL_DEMO, check_results, write_feed
from tests.system.services import REPO, VENV_BIN, Deployment, crash, free_port, grpc_healthy

pytestmark = pytest.mark.system

FEED = "demo_crash"
JOB = f"{FEED}__ingest"
DAY = "2026-11-02"  # killed mid-step, then re-run
STRANDED_DAY = "2026-11-03"  # its code server is killed with it
LOCAL_PROFILE = REPO / "dagster.yaml"
LOCATION = "pynomaly"
# the small demo feed's rows, delivered as CSV files (one per day) so a day can be a named pipe
CRASH_FEED = {**SMALL_DEMO, "name": FEED, "source": {"kind": "csv", "path": "landing/{date}.csv"}}
DEMO = DemoSettings(**{k: v for k, v in SMALL_DEMO["source"].items() if k != "kind"})
#: readings with a negative rpm (the feed's rule is rpm >= 0): validation quarantines them
BAD_READINGS = 3
# the run worker imports the code location in a fresh process: slow on a loaded 2-core machine
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 240
# the code server polls its run workers every 0.5 s; the bound leaves room for a loaded machine
CRASH_REPORTED_WITHIN = 30
# the killed run steps in subprocesses (the default executor, named so the test does not depend on
# the default); the others run in one process, which only saves time on the test machine
MULTIPROCESS = {"execution": {"config": {"multiprocess": {}}}}
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class LocalDagster:
    dep: Deployment
    instance: dg.DagsterInstance
    workspace: Path
    landing: Path
    pynomaly_home: Path

    def launch(
        self, day: str, tags: dict[str, str] | None = None, run_config: dict | None = None
    ) -> str:
        """Submit an ingest run for ``day`` through the instance's run queue, as the UI would."""
        run_id = str(uuid.uuid4())
        argv = [
            str(VENV_BIN / "dagster"),
            "job",
            "launch",
            "-w",
            str(self.workspace),
            "-j",
            JOB,
            "--tags",
            json.dumps({"dagster/partition": day, **(tags or {})}),
            "--run-id",
            run_id,
        ]
        if run_config:
            argv += ["--config-json", json.dumps(run_config)]
        launched = subprocess.run(
            argv, env=self.dep.env, capture_output=True, text=True, timeout=180, check=False
        )
        if launched.returncode != 0:
            raise self.dep.fail(
                f"dagster job launch {JOB} [{day}] exited {launched.returncode}: "
                f"{launched.stderr[-3000:]}"
            )
        return run_id

    def status(self, run_id: str) -> dg.DagsterRunStatus:
        run = self.instance.get_run_by_id(run_id)
        assert run is not None, (
            f"run {run_id} is not in the instance at {self.instance.root_directory}"
        )
        return run.status

    def wait_for_status(self, run_id: str, status: dg.DagsterRunStatus, timeout: float) -> float:
        """Seconds until run ``run_id`` reaches ``status``; fails at once if it ends in another one."""
        start = time.monotonic()

        def reached() -> bool:
            current = self.status(run_id)
            if current != status and current in FINISHED:
                raise self.dep.fail(
                    f"run {run_id} ended {current.value}, expected {status.value}:\n"
                    + "\n".join(self.messages(run_id)[-20:])
                )
            return current == status

        self.dep.wait_until(f"run {run_id} to be {status.value}", reached, timeout, interval=0.5)
        return time.monotonic() - start

    def messages(self, run_id: str) -> list[str]:
        return [
            f"{e.dagster_event_type.value if e.dagster_event_type else 'log'}: {e.message}"
            for e in self.instance.all_logs(run_id)
        ]

    def materializations(self, asset: str, day: str) -> list[dg.EventLogRecord]:
        return list(
            self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey([FEED, asset]), asset_partitions=[day]),
                limit=10,
            ).records
        )


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_monitoring")
    feeds = root / "feeds"
    write_feed(feeds, CRASH_FEED)
    (feeds / "landing").mkdir()
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(LOCAL_PROFILE, dagster_home / "dagster.yaml")  # what scripts/env.sh does
    (root / "logs").mkdir()
    port = free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        json.dumps(
            {
                "load_from": [
                    {"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": LOCATION}}
                ]
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYNOMALY_", "DAGSTER_", "MLFLOW_"))
    }
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DAGSTER_HOME": str(dagster_home),
            "PYNOMALY_HOME": str(root / "pynomaly_home"),
            "PYNOMALY_FEEDS_DIR": str(feeds),
            "PYNOMALY_SIGNING_KEY": "run-monitoring-test-key",
        }
    )
    dep = Deployment(env=env, log_dir=root / "logs", webserver_url="")
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
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
        # the profile turns run monitoring on: the daemon runs its MONITORING loop
        dep.wait_until(
            "a heartbeat of the daemon's run monitoring",
            lambda: "MONITORING" in instance.get_daemon_heartbeats(),
            STARTUP_TIMEOUT,
        )
        yield LocalDagster(dep, instance, workspace, feeds / "landing", root / "pynomaly_home")
    finally:
        dep.stop_all()  # run workers and step subprocesses live in the code server's process group
        instance.dispose()


def day_csv(day: str) -> tuple[str, set[str], set[str]]:
    """The demo feed's rows for ``day`` as CSV, with ``BAD_READINGS`` negative rpm values.

    Returns the text, every reading id and the ids that validation must quarantine.
    """
    frame = generate_day(dt.date.fromisoformat(day), DEMO)
    bad = frame.index[:: len(frame) // BAD_READINGS][:BAD_READINGS]
    frame.loc[bad, "rpm"] = -1.0
    return frame.to_csv(index=False), set(frame["reading_id"]), set(frame.loc[bad, "reading_id"])


def make_pipe(local: LocalDagster, day: str) -> Path:
    pipe = local.landing / f"{day}.csv"
    os.mkfifo(pipe)
    return pipe


def write_into_pipe(pipe: Path, text: str) -> bool:
    """Deliver ``text`` to the process blocked reading ``pipe``; OSError (ENXIO) while nobody reads it."""
    fd = os.open(
        pipe, os.O_WRONLY | os.O_NONBLOCK
    )  # fails instead of waiting when there is no reader
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return True


def engine_pid(
    local: LocalDagster, run_id: str, event_type: dg.DagsterEventType, message: str
) -> int | None:
    """The ``pid`` the run's first ``event_type`` event whose message starts with ``message`` recorded."""
    for entry in local.instance.all_logs(run_id, of_type=event_type):
        if entry.message.startswith(message):
            return int(entry.dagster_event.event_specific_data.metadata["pid"].value)
    return None


def running(pid: int) -> bool:
    """True while process ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def quarantine(local: LocalDagster, day: str) -> pd.DataFrame:
    engine = sa.create_engine(f"sqlite:///{local.pynomaly_home / 'warehouse.db'}")
    try:
        return pd.read_sql(
            sa.text("SELECT * FROM quarantine WHERE feed = :f AND partition_date = :d"),
            engine,
            params={"f": FEED, "d": day},
        )
    finally:
        engine.dispose()


def test_killed_run_worker_fails_the_run_its_step_commits_anyway_and_a_rerun_is_exact(local):
    """SIGKILL of the run worker while ``raw`` runs in its step subprocess (blocked on the pipe)."""
    text, ids, bad_ids = day_csv(DAY)
    pipe = make_pipe(local, DAY)
    killed = local.launch(DAY, run_config=MULTIPROCESS)
    local.dep.wait_until(
        f"step {FEED}__raw of run {killed} to start",
        lambda: local.instance.all_logs(killed, of_type=dg.DagsterEventType.STEP_START),
        STARTUP_TIMEOUT + RUN_TIMEOUT,
        interval=0.5,
    )
    worker = engine_pid(local, killed, dg.DagsterEventType.ENGINE_EVENT, "Started process for run")
    step = engine_pid(local, killed, dg.DagsterEventType.STEP_WORKER_STARTED, "Executing step")
    assert worker and step and worker != step, local.messages(killed)

    os.kill(worker, signal.SIGKILL)
    took = local.wait_for_status(killed, dg.DagsterRunStatus.FAILURE, CRASH_REPORTED_WITHIN)
    crash_report = f"Run execution process for {killed} was terminated by signal 9 (SIGKILL)"
    assert any(crash_report in m for m in local.messages(killed)), local.messages(killed)
    print(f"run worker killed: run FAILURE after {took:.1f} s")

    # the step subprocess outlived its run worker: it is still reading the day's source ...
    assert running(step), f"step subprocess {step} of run {killed} died with its run worker"
    local.dep.wait_until(
        f"the surviving step {step} to read {pipe}",
        lambda: write_into_pipe(pipe, text),
        60,
        interval=0.5,
    )
    local.dep.wait_until(
        f"the surviving step {step} to exit", lambda: not running(step), RUN_TIMEOUT
    )
    # ... and committed its output into the run that is already FAILURE
    assert [r.run_id for r in local.materializations("raw", DAY)] == [killed]
    assert local.instance.all_logs(killed, of_type=dg.DagsterEventType.STEP_SUCCESS)
    assert local.status(killed) == dg.DagsterRunStatus.FAILURE
    assert not local.materializations("validated", DAY), (
        "the killed run worker never started validated"
    )
    frames = FrameStore(local.pynomaly_home / "frames")
    assert len(frames.read([FEED, "raw"], DAY)) == len(ids)

    # re-run the partition (in one process: the crash is over, this is about the stored result)
    pipe.unlink()
    (local.landing / f"{DAY}.csv").write_text(text)
    rerun = local.launch(DAY, run_config=IN_PROCESS)
    local.wait_for_status(rerun, dg.DagsterRunStatus.SUCCESS, STARTUP_TIMEOUT + RUN_TIMEOUT)

    # every write replaced the partition: one copy of each row, wherever the killed run got to
    raw = frames.read([FEED, "raw"], DAY)
    valid = frames.read([FEED, "validated"], DAY)
    quarantined = quarantine(local, DAY)
    assert len(raw) == len(ids) and set(raw["reading_id"]) == ids
    assert valid["reading_id"].is_unique and set(valid["reading_id"]) == ids - bad_ids
    assert sorted(quarantined["record_key"]) == sorted(bad_ids), quarantined[
        ["record_key", "column_name", "rule"]
    ]
    assert set(quarantined["run_id"]) == {rerun}
    assert len(raw) == len(valid) + quarantined["record_key"].nunique()
    assert check_results(local.instance, rerun)["row_accounting"] is True
    assert sorted(r.run_id for r in local.materializations("raw", DAY)) == sorted([killed, rerun])
    [validated] = local.materializations("validated", DAY)
    meta = {k: v.value for k, v in validated.asset_materialization.metadata.items()}
    assert validated.run_id == rerun
    counts = (meta["raw_rows"], meta["dagster/row_count"], meta["quarantined_rows"])
    assert counts == (len(ids), len(ids) - BAD_READINGS, BAD_READINGS)


def test_run_whose_code_server_died_with_it_is_failed_by_run_monitoring(local):
    """Runs last: it kills the code server. Nothing is left to report the run but the daemon."""
    make_pipe(local, STRANDED_DAY)
    max_runtime = 20
    stranded = local.launch(
        STRANDED_DAY, tags={"dagster/max_runtime": str(max_runtime)}, run_config=IN_PROCESS
    )
    local.dep.wait_until(
        f"step {FEED}__raw of run {stranded} to start",
        lambda: local.instance.all_logs(stranded, of_type=dg.DagsterEventType.STEP_START),
        STARTUP_TIMEOUT + RUN_TIMEOUT,
        interval=0.5,
    )
    worker = engine_pid(
        local, stranded, dg.DagsterEventType.ENGINE_EVENT, "Started process for run"
    )
    assert worker, local.messages(stranded)

    crash(local.dep, "code_server")
    local.dep.wait_until(
        f"run worker {worker} to die with its code server", lambda: not running(worker), 10
    )
    time.sleep(3)  # the code server would have reported a dead worker by now; it is dead too
    assert local.status(stranded) == dg.DagsterRunStatus.STARTED

    # the maximum runtime (here the run's tag; ./dagster.yaml sets max_runtime_seconds for every
    # run) plus one poll of the monitoring loop, with room for a loaded machine
    poll = local.instance.run_monitoring_poll_interval_seconds
    took = local.wait_for_status(stranded, dg.DagsterRunStatus.FAILURE, max_runtime + poll + 60)
    messages = local.messages(stranded)
    assert any(f"exceeding maximum runtime of {max_runtime} seconds" in m for m in messages), (
        messages
    )
    assert any("forcibly marked as failed" in m for m in messages), messages
    print(
        f"code server killed: run FAILURE after {took:.1f} s (max runtime {max_runtime} s, poll {poll} s)"
    )
