"""The review page behind the compose stack's authenticating proxy (docker/proxy, nginx) as local
processes, with the commands docker/docker-compose.yml gives them: no anonymous access, and the
reviewer recorded with a verdict is the user nginx authenticated, whatever the client claims."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from pynomaly_core.warehouse import FEEDBACK_TABLE, read_partition
from tests.review.conftest import DAY, FEED, Warehouse, key
from tests.system.services import (
    COMPOSE_FILE,
    Deployment,
    basic_auth,
    compose_commands,
    free_port,
    interpolate,
)

pytestmark = pytest.mark.slow

USER = ("admin", "review-test-ui-password")


def nginx_or_skip() -> None:
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not shutil.which(
        "openssl"
    ):
        pytest.skip("nginx or openssl is not installed (bash scripts/proxy.sh installs them)")


def compose_service(name: str) -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_compose_runs_the_review_page_unpublished_behind_the_proxy() -> None:
    review, proxy = compose_service("review"), compose_service("proxy")
    assert "ports" not in review, "only the proxy publishes ports"
    assert review["environment"]["PYNOMALY_REVIEW_TRUST_PROXY"] == "1"
    command = [interpolate(str(a), {}) for a in review["command"]]
    assert command[:3] == ["python", "-m", "pynomaly_review"]
    proxy_command = compose_commands({})["proxy"]
    assert option(proxy_command, "--review-upstream") == f"review:{option(command, '--port')}"
    published = {interpolate(p, {}).split(":")[-1] for p in proxy["ports"]}
    assert option(proxy_command, "--review-port") in published


def request(url: str, *, auth=None, data=None, headers=None) -> tuple[int, str]:
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = basic_auth(auth)
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body, headers=headers), timeout=30
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_the_proxy_refuses_anonymous_reviewers_and_names_the_authenticated_one(
    sqlite_warehouse: Warehouse, tmp_path: Path
) -> None:
    nginx_or_skip()
    review_port, proxy_port = free_port(), free_port()
    variables = {
        "PYNOMALY_REVIEW_PORT": str(review_port),
        "PROXY_REVIEW_PORT": str(proxy_port),
        "PROXY_DAGSTER_PORT": str(free_port()),
        "PROXY_MLFLOW_PORT": str(free_port()),
    }
    review = [interpolate(str(a), variables) for a in compose_service("review")["command"]]
    review = [sys.executable if a == "python" else a for a in review]
    review[review.index("--host") + 1] = "127.0.0.1"
    proxy = compose_commands(variables)["proxy"]
    proxy[proxy.index("--host") + 1] = "127.0.0.1"
    for upstream in ("--dagster-upstream", "--mlflow-upstream", "--review-upstream"):
        proxy[proxy.index(upstream) + 1] = "127.0.0.1:" + option(proxy, upstream).rsplit(":")[-1]
    run_dir = tempfile.mkdtemp(prefix="pynomaly-proxy-")
    (tmp_path / "logs").mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "DAGSTER_UI_USERNAME": USER[0],
        "DAGSTER_UI_PASSWORD": USER[1],
        "PROXY_RUN_DIR": run_dir,
        "PYNOMALY_WAREHOUSE_URL": sqlite_warehouse.url,
        "PYNOMALY_REVIEW_FRAMES_DIR": str(sqlite_warehouse.frames),
        "PYNOMALY_REVIEW_TRUST_PROXY": "1",
    }
    public = f"http://127.0.0.1:{proxy_port}"
    dep = Deployment(env=env, log_dir=tmp_path / "logs", webserver_url=public)
    try:
        dep.start("review", review)
        dep.start("proxy", proxy)
        dep.wait_until(
            "the review page through the proxy",
            lambda: request(public + "/healthz", auth=USER)[0] == 200,
            120,
            interval=0.5,
        )
        assert request(public + "/")[0] == 401
        assert request(public + "/", auth=(USER[0], "not-the-password"))[0] == 401
        status, page = request(f"{public}/?feed={FEED}&day={DAY}", auth=USER)
        assert status == 200 and f'reviewing as <strong id="reviewer">{USER[0]}</strong>' in page

        verdict = {"feed": FEED, "day": DAY, "record_key": key(19), "verdict": "confirmed"}
        same_origin = {"HX-Request": "true", "Origin": public}
        anonymous = request(public + "/verdict", data=verdict, headers=same_origin)
        assert anonymous[0] == 401
        spoofed = {**same_origin, "X-Forwarded-User": "mallory", "Remote-User": "mallory"}
        status, _ = request(public + "/verdict", auth=USER, data=verdict, headers=spoofed)
        assert status == 200
        rows = read_partition(
            sqlite_warehouse.engine, FEEDBACK_TABLE, feed=FEED, partition_date=DAY
        )
        assert list(zip(rows["record_key"], rows["verdict"], rows["reviewer"])) == [
            (key(19), "confirmed", USER[0])
        ]
        dep.check_alive()
    finally:
        dep.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
