"""The read-only BI role (deploy/sql/bi_readonly_role.sql), run with psql on a fresh PostgreSQL database.

After an export the script gives the role SELECT on ``anomaly_scores`` and every view, and nothing
on ``quarantine``, ``notifications`` or ``anomaly_feedback``; the views, which every export drops
and re-creates, stay readable through the default privileges.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from pynomaly_core.maintenance import notify
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    BI_VIEWS,
    QUARANTINE_TABLE,
    ensure_warehouse,
    make_engine,
    replace_partition,
    upsert_feedback,
)
from tests.core.warehouse.helpers import DAY, scores
from tests.pg import server_url, temporary_database

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "sql" / "bi_readonly_role.sql"
PSQL = shutil.which("psql")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        PSQL is None,
        reason="psql (the PostgreSQL client) is not installed: the script runs with it",
    ),
]


def libpq(url: str, user: str | None = None) -> str:
    """``url`` as psql and psycopg take it (no SQLAlchemy driver name), optionally as another user."""
    parsed = sa.make_url(url).set(drivername="postgresql")
    return (parsed.set(username=user, password=None) if user else parsed).render_as_string(
        hide_password=False
    )


def run_script(url: str, **variables: str) -> subprocess.CompletedProcess:
    options = [f"--variable={name}={value}" for name, value in variables.items()]
    return subprocess.run(
        [PSQL, "--no-psqlrc", "--quiet", libpq(url), *options, "--file", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def export(engine: sa.Engine, schema: str, day: str = DAY) -> None:
    """A day's export, with a verdict, a quarantined row and a notification."""
    ensure_warehouse(engine, schema)
    frame = scores(10)
    replace_partition(
        engine, ANOMALY_TABLE, frame, feed="payments", partition_date=day, schema=schema
    )
    key = frame.loc[frame["is_anomaly"], "record_key"].iloc[0]
    upsert_feedback(
        engine,
        pd.DataFrame(
            {
                "record_key": [key],
                "verdict": ["confirmed"],
                "reviewer": ["ana"],
                "note": [None],
                "reviewed_at": [pd.Timestamp(f"{day} 09:00", tz="UTC")],
            }
        ),
        feed="payments",
        partition_date=day,
        schema=schema,
    )
    quarantined = pd.DataFrame(
        {
            "row_number": [1],
            "record_key": ["r-1"],
            "column_name": ["iban"],
            "rule": ["not_nullable"],
            "failure_value": [None],
            "row_json": [{"iban": "NL00 PII"}],
            "run_id": ["run-1"],
            "quarantined_at": [pd.Timestamp(f"{day} 04:00", tz="UTC")],
        }
    )
    replace_partition(
        engine, QUARANTINE_TABLE, quarantined, feed="payments", partition_date=day, schema=schema
    )
    notify(
        engine,
        "payments",
        "drift",
        "drift",
        {},
        webhook_url=None,
        cooldown=dt.timedelta(0),
        now=dt.datetime.fromisoformat(f"{day}T05:00+00:00"),
        schema=schema,
    )


@pytest.fixture
def role() -> Iterator[str]:
    """A role name of this test only; roles are cluster-wide, so it is dropped after the database."""
    name = f"bi_reader_{uuid.uuid4().hex[:8]}"
    yield name
    admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.mark.parametrize("schema", ["anomalies", "Anomalies"])
def test_the_bi_role_reads_the_anomaly_table_and_views_and_nothing_else(
    role: str, schema: str
) -> None:
    with temporary_database() as url:
        engine = make_engine(url)
        export(engine, schema)
        for _ in range(2):  # idempotent
            done = run_script(url, schema=schema, role=role)
            assert done.returncode == 0, done.stderr
        with (
            engine.begin() as conn
        ):  # the script creates the role NOLOGIN; the admin lets it log in
            conn.execute(sa.text(f'ALTER ROLE "{role}" LOGIN'))
        export(engine, schema, day="2024-05-02")  # drops and re-creates the views: still readable

        readable = ["anomaly_scores", "anomaly_attributes", *BI_VIEWS]
        closed = ["quarantine", "notifications", "anomaly_feedback"]
        with psycopg.connect(libpq(url, user=role), autocommit=True) as conn:
            quoted = {name: f'"{schema}".{name}' for name in readable + closed}
            counts = {
                name: conn.execute(f"SELECT COUNT(*) FROM {quoted[name]}").fetchone()[0]
                for name in readable
            }
            assert counts == {
                "anomaly_scores": 20,
                "anomaly_attributes": 0,
                "anomaly_daily_summary": 2,
                "anomaly_top": 6,
                "model_versions_in_use": 1,
            }
            verdicts = conn.execute(
                f"SELECT verdict FROM {quoted['anomaly_top']} WHERE verdict IS NOT NULL"
            ).fetchall()
            assert verdicts == [
                ("confirmed",),
                ("confirmed",),
            ]  # feedback is readable through the views
            refused = [
                *(f"SELECT * FROM {quoted[name]}" for name in closed),
                (
                    f"INSERT INTO {quoted['anomaly_feedback']} (feed, partition_date, record_key, verdict, reviewed_at) "
                    "VALUES ('payments', '2024-05-01', 'rec-000001', 'rejected', now())"
                ),
                f"UPDATE {quoted['anomaly_feedback']} SET verdict = 'rejected'",
                f"DELETE FROM {quoted['anomaly_scores']}",
                f"UPDATE {quoted['anomaly_scores']} SET score = 0",
                f"INSERT INTO {quoted['notifications']} SELECT * FROM {quoted['notifications']}",
                f"CREATE TABLE {quoted['anomaly_scores']}_copy (x int)",
            ]
            for statement in refused:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                    conn.execute(statement)
        engine.dispose()


def test_the_script_refuses_to_run_before_the_first_export(role: str) -> None:
    with temporary_database() as url:
        done = run_script(url, schema="anomalies", role=role)
        assert done.returncode != 0
        assert (
            "schema anomalies has no anomaly_scores, anomaly_attributes, anomaly_feedback, quarantine, "
            "notifications, "
            "anomaly_daily_summary, anomaly_top, model_versions_in_use; run this after the first export"
        ) in done.stderr
        missing = run_script(url, role=role)
        assert missing.returncode != 0 and "name the warehouse schema" in missing.stderr
