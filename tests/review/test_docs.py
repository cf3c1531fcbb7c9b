"""Every shell and SQL snippet of docs/review.md runs as printed.

The shell snippets start ``scripts/review.sh`` on an embedded warehouse that already exists (so
the demo is not run), each on a free port (``--port`` added or replaced), through a stand-in
virtual environment whose ``python`` is this one and whose install stamp is current, so
``scripts/setup.sh`` installs nothing; the page must answer and name the reviewer. The SQL
snippet runs on SQLite and PostgreSQL after a verdict was recorded and must return it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from pynomaly_core.warehouse import make_engine
from pynomaly_review.verdicts import record_verdict
from tests.browser import until
from tests.review.conftest import DAY, Warehouse, export_day, key
from tests.system.services import REPO, free_port

DOC = REPO / "docs" / "review.md"
FEED = "demo_telemetry"  # the feed the page's SQL names


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)


def stand_in_venv(root: Path) -> Path:
    """A venv directory whose python is this interpreter and whose stamp says "installed"."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    digest = hashlib.sha256(
        (REPO / "pyproject.toml").read_bytes() + (REPO / "constraints" / "ci.txt").read_bytes()
    ).hexdigest()[:16]
    (venv / ".pynomaly-installed").write_text(f"{digest} [all,dev]\n")
    return venv


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_the_page_has_its_snippets() -> None:
    assert len(blocks("bash")) == 2 and len(blocks("sql")) == 1


def test_each_shell_snippet_starts_the_page_on_the_embedded_warehouse(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    engine = make_engine(f"sqlite:///{home / 'warehouse.db'}")
    export_day(engine, home / "frames", feed=FEED)
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYNOMALY_", "DAGSTER_HOME"))}
    env.update(
        PYNOMALY_HOME=str(home),
        PYNOMALY_VENV=str(stand_in_venv(tmp_path)),
        USER="snippet-user",
        PYTHONPATH=str(REPO),
    )
    for snippet in blocks("bash"):
        lines = [line for line in snippet.splitlines() if line.strip()]
        assert len(lines) == 1, snippet
        port = free_port()
        command = re.sub(r"--port \d+", "", lines[0]).strip() + f" --port {port}"
        expected = re.match(r"PYNOMALY_REVIEWER=(\S+) ", command)
        log = tmp_path / f"snippet-{port}.log"
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            shown = until(
                lambda url=url, process=process: fetch(url) or process.poll() is not None,
                timeout=120,
            )
            assert isinstance(shown, str) and shown, f"{command!r}: {log.read_text()[-2000:]}"
            reviewer = expected.group(1) if expected else "snippet-user"
            assert f'<strong id="reviewer">{reviewer}</strong>' in shown
            assert f'<option value="{FEED}" selected>' in shown
            assert "running the demo" not in log.read_text()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def test_the_sql_snippet_lists_the_days_verdicts(warehouse: Warehouse) -> None:
    export_day(warehouse.engine, warehouse.frames, feed=FEED)
    record_verdict(
        warehouse.engine,
        feed=FEED,
        day=DAY,
        record_key=key(19),
        verdict="confirmed",
        reviewer="ana",
        note="hot bearing",
    )
    (sql,) = blocks("sql")
    assert f"'{DAY}'" in sql
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(sql.strip().rstrip(";"))).all()
    assert [tuple(r)[:4] for r in rows] == [(key(19), "confirmed", "ana", "hot bearing")]
