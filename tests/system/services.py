"""The deployment's services as local processes: commands read from docker/docker-compose.yml.

The compose file is the one place the commands of MLflow (and its one-shot user bootstrap), the
code server, webserver, daemon and the authenticating proxy are written; :func:`compose_commands`
reads them and fills in ``${VAR:-default}`` the way ``docker compose`` does, so the system test
runs exactly what the containers run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "docker-compose.yml"
INSTANCE_PROFILE = REPO / "docker" / "dagster.yaml"
SERVICES = ("mlflow", "mlflow_users", "code_server", "webserver", "daemon", "proxy")
VENV_BIN = Path(sys.executable).parent

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """``${NAME}`` / ``${NAME:-default}`` as docker compose substitutes them."""

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in variables:
            return variables[name]
        if default is None:
            raise KeyError(
                f"{COMPOSE_FILE}: ${{{name}}} has no default and the test does not set it"
            )
        return default

    return _VARIABLE.sub(sub, value)


def compose_commands(variables: Mapping[str, str]) -> dict[str, list[str]]:
    """``{service: argv}`` of the MLflow, Dagster and proxy services in the compose file."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    missing = [name for name in SERVICES if "command" not in services.get(name, {})]
    if missing:
        raise KeyError(f"{COMPOSE_FILE}: services {missing} have no 'command'")
    return {
        name: [interpolate(str(arg), variables) for arg in services[name]["command"]]
        for name in SERVICES
    }


def executable(name: str, argv0: str) -> str:
    """Service ``name``'s program: the venv's (dagster, mlflow, python: the image's Python
    environment), else the system's (sh, which runs the proxy image's start script)."""
    found = shutil.which(argv0, path=str(VENV_BIN)) or shutil.which(argv0)
    if found is None:
        raise FileNotFoundError(
            f"{COMPOSE_FILE}: service {name}'s command {argv0!r} is neither in {VENV_BIN} "
            "nor on PATH"
        )
    return found


def basic_auth(credentials: tuple[str, str]) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        # the service's own children (the code server's gRPC subprocess, run workers) share its group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class Deployment:
    env: dict[str, str]
    log_dir: Path
    webserver_url: str
    warehouse_url: str = ""
    mlflow_backend_url: str = ""
    services: dict[str, Service] = field(default_factory=dict)
    #: user and password sent with every request to ``webserver_url`` (the proxy's basic auth)
    auth: tuple[str, str] | None = None
    #: MLflow as people reach it (through the proxy) and as the code server does (the server itself)
    mlflow_url: str = ""
    mlflow_server_url: str = ""

    def start(self, name: str, argv: list[str]) -> Service:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            [executable(name, argv[0]), *argv[1:]],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        service = Service(name, argv, log_path, process)
        self.services[name] = service
        return service

    def run_once(self, name: str, argv: list[str], timeout: float) -> str:
        """Run a one-shot service (compose waits for it to complete) to its end; fail with its
        output and the running services' logs unless it exits 0. Returns its output."""
        try:
            done = subprocess.run(
                [executable(name, argv[0]), *argv[1:]],
                cwd=REPO,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise self.fail(
                f"one-shot service {name} ({' '.join(argv)}) ran past {timeout:.0f} s: "
                f"{exc.stdout}{exc.stderr}"
            ) from exc
        output = done.stdout + done.stderr
        (self.log_dir / f"{name}.log").write_text(output)
        if done.returncode != 0:
            raise self.fail(
                f"one-shot service {name} ({' '.join(argv)}) exited {done.returncode}:\n{output[-6000:]}"
            )
        return output

    def stop_all(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    def logs(self) -> str:
        parts = []
        for service in self.services.values():
            state = (
                "running"
                if service.process.poll() is None
                else f"exited {service.process.returncode}"
            )
            parts.append(
                f"----- {service.name} ({state}): {' '.join(service.argv)}\n{service.log_tail()}"
            )
        return "\n".join(parts)

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{message}\n\nservice logs (tails):\n{self.logs()}")

    def check_alive(self) -> None:
        dead = [s.name for s in self.services.values() if s.process.poll() is not None]
        if dead:
            raise self.fail(f"service(s) {dead} exited")

    def wait_until(
        self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0
    ) -> Any:
        """Call ``probe`` until it returns something truthy; fail with the logs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                result = probe()
                if result:
                    return result
            except (OSError, urllib.error.URLError, subprocess.SubprocessError, KeyError) as exc:
                last_error = exc
            time.sleep(interval)
        raise self.fail(
            f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})"
        )

    # ------------------------------------------------------------------ webserver
    def http_get(self, path: str, timeout: float = 10.0) -> bytes:
        return self.http_get_url(self.webserver_url + path, timeout, auth=self.auth)

    @staticmethod
    def http_get_url(url: str, timeout: float = 10.0, auth: tuple[str, str] | None = None) -> bytes:
        headers = {"Authorization": basic_auth(auth)} if auth else {}
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as response:
            return response.read()

    @staticmethod
    def http_request(
        url: str,
        auth: tuple[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (names in lower case) and body of one request (a POST with ``data``),
        error statuses (401, 403, ...) included."""
        headers = {**(headers or {}), **({"Authorization": basic_auth(auth)} if auth else {})}
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return (
                    response.status,
                    {k.lower(): v for k, v in response.headers.items()},
                    response.read(),
                )
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60.0) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = basic_auth(self.auth)
        request = urllib.request.Request(
            self.webserver_url + "/graphql", data=body, headers=headers
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise self.fail(f"GraphQL errors: {payload['errors']}")
        return payload["data"]


def grpc_healthy(port: int, env: Mapping[str, str]) -> bool:
    """True once the gRPC code server on 127.0.0.1:``port`` answers ``dagster api grpc-health-check``."""
    return (
        subprocess.run(
            [
                str(VENV_BIN / "dagster"),
                "api",
                "grpc-health-check",
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
            ],
            check=False,
            env=dict(env),
            capture_output=True,
            timeout=30,
        ).returncode
        == 0
    )


def crash(dep: Deployment, name: str) -> None:
    """SIGKILL service ``name`` and everything it started (its process group), as a machine crash or a
    closed terminal would: nothing gets to clean up or report. The deployment forgets the service, so
    :meth:`Deployment.check_alive` does not count the death it caused on purpose."""
    service = dep.services.pop(name)
    try:
        os.killpg(service.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    service.process.wait(timeout=30)
