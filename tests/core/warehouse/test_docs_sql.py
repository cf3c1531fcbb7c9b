"""Every SQL snippet of docs/anomaly_table.md runs, in document order, on an exported warehouse.

PostgreSQL (schema ``anomalies`` on the search path, as the page's examples assume) and SQLite
each get a warehouse with the page's feed ``payments``: days ``2026-01-15``, yesterday and three
days ago, a source table ``payments``, a quarantined row and a notification. A block is split at
a ``-- SQLite`` line into its PostgreSQL and SQLite parts; a block opening with ``-- PostgreSQL``
runs on PostgreSQL only; an inline ``-- SQLite: <replacement>`` hint is applied on SQLite. Every
SELECT must return rows. The page's Python snippet (recording verdicts) and its ``psql`` command
(the BI role script) run as well.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.maintenance import notify
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    QUARANTINE_TABLE,
    ensure_warehouse,
    make_engine,
    replace_partition,
)
from tests.core.warehouse.helpers import explanation_columns
from tests.pg import server_url, temporary_database

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "anomaly_table.md"
TODAY = dt.datetime.now(dt.UTC).date()
DAYS = [
    "2026-01-15",
    (TODAY - dt.timedelta(days=1)).isoformat(),
    (TODAY - dt.timedelta(days=3)).isoformat(),
]
KEYS = ["p-88121", "p-90412", *(f"p-{70000 + i}" for i in range(18))]  # the page's two keys first


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)


def statements(sql: str) -> list[str]:
    return [
        s.strip() for s in re.split(r";\s*(?:\n|$)", sql) if s.strip() and not _only_comments(s)
    ]


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def for_sqlite(sql: str) -> str:
    """Apply the inline hints ``<code> <op> <expr>  -- SQLite: <op> <sqlite expr>``."""
    lines = []
    for line in sql.splitlines():
        code, _, hint = line.partition("-- SQLite:")
        if hint:
            operator = hint.split()[0]
            code = code[: code.rstrip().rindex(f" {operator} ")] + " " + hint.strip()
        lines.append(code)
    return "\n".join(lines)


def sql_snippets(dialect: str) -> list[str]:
    """The statements of every SQL block for ``dialect``, in document order."""
    out = []
    for block in blocks("sql"):
        first = block.splitlines()[0]
        # a "-- Demo feed" block runs on the demo's data: tests/docs/test_analyst_query.py
        if first.startswith("-- Demo feed"):
            continue
        postgres, marker, sqlite = block.partition("\n-- SQLite\n")
        if marker:
            part = postgres if dialect == "postgresql" else sqlite
        elif first.startswith("-- PostgreSQL"):
            same = re.search(r"SQLite: the same with (\S+) for (\S+)\)", first)
            if dialect == "sqlite" and same is None:
                continue
            part = block if dialect == "postgresql" else block.replace(same.group(2), same.group(1))
        else:
            part = block if dialect == "postgresql" else for_sqlite(block)
        out.extend(statements(part))
    return out


def populate(engine: sa.Engine) -> None:
    """The warehouse the page's examples query."""
    ensure_warehouse(engine)
    rng = np.random.default_rng(0)
    for day in DAYS:
        flagged = np.arange(len(KEYS)) < 6
        frame = pd.DataFrame(
            {
                "record_key": KEYS,
                "event_time": pd.Timestamp(day, tz="UTC")
                + pd.to_timedelta(np.arange(len(KEYS)), unit="h"),
                "score": np.where(flagged, 5.0, 1.0) + rng.random(len(KEYS)),
                "normalized_score": np.where(flagged, 0.99, 0.4),
                "is_anomaly": flagged,
                "severity": np.where(
                    flagged, np.resize(["low", "medium", "high", "critical"], len(KEYS)), "none"
                ),
                "model_name": "IForest",
                "model_version": 3,
                "run_id": "run-1",
                "top_features": [["amount", "hour"] if f else None for f in flagged],
                "scored_at": pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1),
                **explanation_columns(flagged),
            }
        )
        replace_partition(engine, ANOMALY_TABLE, frame, feed="payments", partition_date=day)
    quarantined = pd.DataFrame(
        {
            "row_number": [4, 4],
            "record_key": ["p-1", "p-1"],
            "column_name": ["amount", None],
            "rule": ["parse as float", "not_nullable"],
            "failure_value": ["abc", None],
            "row_json": [{"amount": "abc"}] * 2,
            "run_id": "run-1",
            "quarantined_at": pd.Timestamp(f"{DAYS[0]} 02:00", tz="UTC"),
        }
    )
    replace_partition(
        engine, QUARANTINE_TABLE, quarantined, feed="payments", partition_date=DAYS[0]
    )
    notify(
        engine,
        "payments",
        "maintenance_report",
        "Pynomaly payments: drift on 3 of 7 days",
        {"reasons": ["drift on 3 of 7 days"]},
        webhook_url=None,
        cooldown=dt.timedelta(0),
    )
    with engine.begin() as conn:  # the source table of the join example
        conn.execute(sa.text("CREATE TABLE payments (payment_id TEXT PRIMARY KEY, amount REAL)"))
        conn.execute(sa.text("INSERT INTO payments VALUES (:k, 10.0)"), [{"k": k} for k in KEYS])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with temporary_database() as url:
        with sa.create_engine(url).begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA anomalies"))
        # the page's examples name tables unqualified: the schema is on the search path
        yield str(
            sa.make_url(url)
            .update_query_dict({"options": "-csearch_path=anomalies"})
            .render_as_string(hide_password=False)
        )


def test_the_page_has_the_snippets_this_test_runs() -> None:
    assert len(blocks("sql")) >= 11 and len(blocks("python")) == 1
    assert any("bi_readonly_role.sql" in block for block in blocks("bash"))


@pytest.fixture
def roles() -> Iterator[dict[str, str]]:
    """The roles the page's snippets name, made unique; dropped after the database (roles are cluster-wide)."""
    names = {name: f"{name}_{uuid.uuid4().hex[:8]}" for name in ("bi_reader", "alice")}
    yield names
    admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for role in names.values():
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


def test_every_sql_snippet_runs(roles: dict[str, str], warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    populate(engine)
    dialect = engine.dialect.name
    # the Python snippet, as a reviewer runs it (it records the verdicts on p-88121 and p-90412)
    recorded = subprocess.run(
        [sys.executable, "-c", blocks("python")[0]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYNOMALY_WAREHOUSE_URL": warehouse_url},
        timeout=120,
        check=False,
    )
    assert recorded.returncode == 0, recorded.stderr
    if dialect == "postgresql":
        _psql_snippet(warehouse_url, roles)
    ran = 0
    for statement in sql_snippets(dialect):
        for name, actual in roles.items():
            statement = re.sub(rf"\b{name}\b", actual, statement)
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            if result.returns_rows:
                assert result.all(), f"no rows from a snippet of {DOC.name}:\n{statement}"
        ran += 1
    assert ran >= 10  # every SELECT, INSERT and GRANT of the page on either backend
    with engine.connect() as conn:
        precision = conn.execute(
            sa.text(
                "SELECT confirmed, rejected FROM anomaly_daily_summary "
                "WHERE feed = 'payments' AND confirmed > 0"
            )
        ).all()
    assert [tuple(r) for r in precision] == [
        (1, 1)
    ]  # the snippets' verdicts on p-88121 and p-90412
    engine.dispose()


def _psql_snippet(url: str, roles: dict[str, str]) -> None:
    """Run the page's psql command (the BI role script) on ``url`` with the test's ``roles``."""
    if shutil.which("psql") is None:
        pytest.skip(
            "psql (the PostgreSQL client) is not installed: the page's BI role command runs with it"
        )
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    command = next(block for block in blocks("bash") if "bi_readonly_role.sql" in block)
    command = re.sub(r'"postgresql://[^"]*"', f"'{libpq}'", command)
    command = command.replace("owner=pynomaly", f"owner={sa.make_url(url).username}")
    command = command.replace("role=bi_reader", f"role={roles['bi_reader']}")
    with sa.create_engine(server_url(), isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{roles["alice"]}" LOGIN'))
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
