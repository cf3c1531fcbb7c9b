"""dagster-celery workers as local processes on a private RabbitMQ virtual host, for tests and benchmarks.

:class:`CeleryCluster` sets up what the celery executor needs to be shared by every process of a
run, all local: a Dagster instance on a fresh PostgreSQL database (``docker/dagster.yaml``), the
Pynomaly home (frames, models, step values) and Dagster's artifact storage on one filesystem, and a
broker. The broker is the local RabbitMQ server, on a virtual host of its own created for the
cluster and deleted after it, so runs of this code on the same server (parallel test sessions,
benchmarks) never see each other's tasks. The run config is ``deploy/celery/run_config.celery_executor.yaml``
with the broker pointed at that virtual host; the workers read the same file, as in production.

Workers are ``dagster-celery worker start`` processes (one task at a time each); a run is launched
with ``dagster job execute`` or ``dagster asset materialize`` in a process of its own, which
orchestrates while the workers execute the steps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.pg import temporary_database
from tests.system.services import INSTANCE_PROFILE, REPO, VENV_BIN, Deployment, Service

RUN_CONFIG = REPO / "deploy" / "celery" / "run_config.celery_executor.yaml"
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
RABBITMQ_START_TIMEOUT = 90
WORKER_START_TIMEOUT = 180


def _rabbitmqctl() -> str | None:
    return shutil.which("rabbitmqctl") or (
        "/usr/sbin/rabbitmqctl" if Path("/usr/sbin/rabbitmqctl").exists() else None
    )


def _amqp_open() -> bool:
    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2):
            return True
    except OSError:
        return False


def rabbitmq_unavailable() -> str | None:
    """Why the local RabbitMQ broker cannot be used (None: it can). A stopped server is started
    (``rabbitmq-server -detached``) first."""
    ctl = _rabbitmqctl()
    if ctl is None:
        return "rabbitmqctl is not installed (the local RabbitMQ server is needed as the Celery broker)"
    if not _amqp_open():
        server = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
        if not Path(server).exists():
            return (
                f"nothing listens on {AMQP_HOST}:{AMQP_PORT} and rabbitmq-server is not installed"
            )
        subprocess.run([server, "-detached"], check=False, capture_output=True, timeout=60)
        deadline = time.monotonic() + RABBITMQ_START_TIMEOUT
        while not _amqp_open() and time.monotonic() < deadline:
            time.sleep(1)
        if not _amqp_open():
            return f"RabbitMQ did not start on {AMQP_HOST}:{AMQP_PORT} within {RABBITMQ_START_TIMEOUT} s"
    done = subprocess.run(
        [ctl, "list_vhosts"], check=False, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return f"rabbitmqctl cannot manage the local server: {(done.stderr or done.stdout).strip()[-500:]}"
    return None


@contextmanager
def private_vhost(prefix: str = "pynomaly_test") -> Iterator[str]:
    """A RabbitMQ virtual host of its own (guest may use it), deleted afterwards; yields its name."""
    ctl = _rabbitmqctl()
    assert ctl is not None, "rabbitmqctl is not installed"
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    def run(*args: str) -> None:
        subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)

    run("add_vhost", name)
    try:
        run("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        subprocess.run([ctl, "delete_vhost", name], check=False, capture_output=True, timeout=60)


def celery_run_config(path: Path, broker: str) -> Path:
    """``deploy/celery/run_config.celery_executor.yaml`` with ``broker`` (results over the same
    broker, ``rpc://``), written to ``path``."""
    config = yaml.safe_load(RUN_CONFIG.read_text())
    execution = config["execution"]["config"]
    execution["broker"] = broker
    execution["backend"] = "rpc://"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class CeleryCluster:
    """A Dagster instance on PostgreSQL, a Pynomaly home and a private broker, shared by every
    process it starts (``env``)."""

    root: Path
    env: dict[str, str]
    config_path: Path
    pg_url: str
    services: Deployment
    workers: dict[str, Service] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def home(self) -> Path:
        return Path(self.env["PYNOMALY_HOME"])

    def instance_env(self) -> dict[str, str]:
        """What the test process needs in ``os.environ`` to open the instance and run jobs
        in-process on the same home (``PYNOMALY_EXECUTOR`` left out: in-process runs)."""
        return {
            k: v
            for k, v in self.env.items()
            if k.startswith(("DAGSTER_", "PYNOMALY_")) and k != "PYNOMALY_EXECUTOR"
        }

    def start_workers(self, names: list[str], timeout: float = WORKER_START_TIMEOUT) -> None:
        """``dagster-celery worker start`` per name (one task at a time); returns once each is ready."""
        for name in names:
            self.workers[name] = self.services.start(
                name,
                [
                    "dagster-celery",
                    "worker",
                    "start",
                    "-A",
                    "dagster_celery.app",
                    "-y",
                    str(self.config_path),
                    "-n",
                    name,
                    "-l",
                    "INFO",
                    "--",
                    "--concurrency=1",
                ],
            )
        for name in names:
            service = self.workers[name]
            self.services.wait_until(
                f"celery worker {name} ready",
                lambda s=service: " ready." in s.log_path.read_text(errors="replace"),
                timeout,
            )

    def stop_workers(self) -> None:
        for name in list(self.workers):
            self.workers.pop(name).stop()
            # stopped on purpose: the deployment must not count it as a service that died
            self.services.services.pop(name, None)

    def worker_of(self, pid: int) -> str | None:
        """The worker whose process group holds process ``pid`` (None: none of them)."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((n for n, s in self.workers.items() if s.process.pid == group), None)

    def launch(self, argv: list[str], log_name: str, timeout: float) -> tuple[int, int, str]:
        """Run ``dagster ...`` (a run's orchestrating process) to its end; returns its pid, exit
        status and output."""
        log_path = self.root / f"{log_name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(VENV_BIN / "dagster"), *argv],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=30)
                raise self.services.fail(
                    f"{' '.join(argv)} ran past {timeout:.0f} s:\n{log_path.read_text()[-4000:]}"
                ) from None
        return process.pid, code, log_path.read_text(errors="replace")

    def execute_job(
        self, job: str, partition: str, timeout: float, run_config: Path | None = None
    ) -> tuple[int, int, str]:
        """``dagster job execute`` of ``job`` for ``partition`` with the celery executor."""
        return self.launch(
            [
                "job",
                "execute",
                "-m",
                "pynomaly_assets.definitions",
                "-a",
                "defs",
                "-j",
                job,
                "-c",
                str(run_config or self.config_path),
                "--tags",
                json.dumps({"dagster/partition": partition}),
            ],
            f"execute-{job}-{partition}-{uuid.uuid4().hex[:6]}",
            timeout,
        )

    def materialize(self, selection: str, partition: str, timeout: float) -> tuple[int, int, str]:
        """``dagster asset materialize`` of ``selection`` for ``partition`` with the celery executor."""
        return self.launch(
            [
                "asset",
                "materialize",
                "-m",
                "pynomaly_assets.definitions",
                "-a",
                "defs",
                "--select",
                selection,
                "--partition",
                partition,
                "-c",
                str(self.config_path),
            ],
            f"materialize-{partition}-{uuid.uuid4().hex[:6]}",
            timeout,
        )


@contextmanager
def celery_cluster(
    root: Path, feeds_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[CeleryCluster]:
    """A :class:`CeleryCluster` under ``root`` for the feeds in ``feeds_dir``; workers, broker virtual
    host and database are removed afterwards, whatever happened."""
    with ExitStack() as stack:
        vhost = stack.enter_context(private_vhost())
        pg_url = stack.enter_context(temporary_database("pynomaly_celery"))
        dagster_home = root / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(INSTANCE_PROFILE, dagster_home / "dagster.yaml")
        (root / "storage").mkdir(exist_ok=True)
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "DAGSTER_HOME": str(dagster_home),
            # docker/dagster.yaml: psycopg2, which binds NOTIFY parameters client-side
            "PYNOMALY_DAGSTER_PG_URL": pg_url.replace(
                "postgresql+psycopg://", "postgresql+psycopg2://"
            ),
            "PYNOMALY_DAGSTER_STORAGE": str(root / "storage"),
            "PYNOMALY_HOME": str(root / "home"),
            "PYNOMALY_FEEDS_DIR": str(feeds_dir),
            "PYNOMALY_SIGNING_KEY": "celery-test-signing-key",
            "PYNOMALY_EXECUTOR": "celery",
            **(extra_env or {}),
        }
        config_path = celery_run_config(
            root / "run_config.celery.yaml", f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{vhost}"
        )
        cluster = CeleryCluster(
            root=root,
            env=env,
            config_path=config_path,
            pg_url=pg_url,
            services=Deployment(env=env, log_dir=logs, webserver_url=""),
        )
        try:
            yield cluster
        finally:
            cluster.stop_workers()
