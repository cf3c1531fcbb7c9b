"""Alerts reach people: a failed run, a failed blocking check and a day with critical anomalies each
send one notification (Slack-compatible webhook, generic JSON webhook, e-mail over SMTP), with a
link to the run or asset; a repeat within the cooldown sends none.

Real components: a Dagster instance, the feeds' sensors evaluated tick by tick as the daemon does,
a local HTTP receiver and a local SMTP server (aiosmtpd), the SQLite warehouse's table
``notifications``.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes

import dagster as dg
import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import make_engine, warehouse_url_default
from tests.assets.helpers import (
    SMALL_DEMO,
    definitions_for,
    failure_message,
    run_job,
    run_range,
    seed_mlflow,
    write_feed,
)

FEED = "payments"
CSV_FEED = {
    "name": FEED,
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "paid_at",
    "record_key": "payment_id",
    "features": [{"name": "amount", "type": "float", "min": 0}],
    "partitioning": {"start_date": "2026-11-01"},
    "validation": {"min_rows": 3},
    "notifications": {"alert_cooldown_hours": 6},
}
GOOD = "payment_id,paid_at,amount\n" + "".join(
    f"p{i},2026-11-0{{day}}T0{i}:00:00Z,{i}.5\n" for i in range(5)
)
SECRET_TOKEN = "s3cr3t-t0ken"
SMTP_PASSWORD = "smtp-pa55word"


class Receiver:
    """A local HTTP server recording what is POSTed to it, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def at(self, path: str) -> list[dict]:
        return [body for p, body in self.received if p == path]


class Mailbox:
    """A local SMTP server (aiosmtpd) that requires a login and keeps the messages."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == b"alerts" and auth_data.password == SMTP_PASSWORD.encode()
            return AuthResult(success=ok)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def channels(monkeypatch) -> Iterator[tuple[Receiver, Mailbox]]:
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    receiver, mailbox = Receiver(), Mailbox()
    monkeypatch.setenv("PYNOMALY_ALERT_WEBHOOK_URL", f"{receiver.base}/json/{SECRET_TOKEN}")
    monkeypatch.setenv("PYNOMALY_ALERT_SLACK_WEBHOOK_URL", f"{receiver.base}/slack/{SECRET_TOKEN}")
    monkeypatch.setenv("PYNOMALY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PYNOMALY_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("PYNOMALY_SMTP_USER", "alerts")
    monkeypatch.setenv("PYNOMALY_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("PYNOMALY_ALERT_EMAIL_TO", "oncall@example.com, data@example.com")
    monkeypatch.setenv("PYNOMALY_UI_BASE_URL", "https://dagster.example.com/")
    yield receiver, mailbox
    receiver.server.shutdown()
    receiver.server.server_close()
    mailbox.close()


def tick(defs: dg.Definitions, instance, name: str, cursor: str | None):
    """One evaluation of sensor ``name``, as the daemon runs it (resources from the definitions)."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        sensor_name=name,
        resources=dict(defs.resources or {}),
    ) as context:
        return sensor.evaluate_tick(context)


def notifications() -> list[dict]:
    engine = make_engine(warehouse_url_default())
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("notifications"):
                return []
            rows = conn.execute(sa.text("SELECT * FROM notifications ORDER BY created_at")).all()
        return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def _feed(tmp_path, **changes):
    feeds = tmp_path / "feeds"
    (feeds / "landing").mkdir(parents=True)
    write_feed(feeds, {**CSV_FEED, **changes})
    return feeds


def test_a_failed_run_sends_one_alert_to_every_channel_and_a_repeat_none(tmp_path, channels):
    receiver, mailbox = channels
    feeds = _feed(tmp_path)
    (feeds / "landing" / "2026-11-02.csv").write_text(GOOD.format(day=2) + "p9,2026-11-02,1,x\n")
    (feeds / "landing" / "2026-11-03.csv").write_text("payment_id,paid_at\nq,1\nr,2,3\n")
    defs = definitions_for(feeds)
    name = f"{FEED}__alert_on_failure"
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = tick(defs, instance, name, None).cursor  # starts from the present
        failed = run_job(defs, instance, f"{FEED}__ingest", "2026-11-02")
        assert not failed.success
        cursor = tick(defs, instance, name, cursor).cursor
        rows = notifications()
        assert len(rows) == 1, rows
        assert rows[0]["kind"] == f"run_failure:{FEED}__ingest" and rows[0]["channel"] == "multiple"
        assert bool(rows[0]["delivered"]), rows[0]["delivery_error"]

        (generic,) = receiver.at(f"/json/{SECRET_TOKEN}")
        assert generic["kind"] == f"run_failure:{FEED}__ingest"
        assert "wrong number of fields" in generic["message"]
        link = f"https://dagster.example.com/runs/{failed.run_id}"
        assert generic["payload"]["link"] == link
        (slack,) = receiver.at(f"/slack/{SECRET_TOKEN}")
        assert set(slack) == {"text"} and f"<{link}|Open in Dagster>" in slack["text"]
        ((recipients, mail),) = mailbox.messages
        assert recipients == ["oncall@example.com", "data@example.com"]
        assert mail["Subject"] == f"[pynomaly] [critical] {FEED}: run_failure:{FEED}__ingest"
        assert link in mail.get_payload()

        # the same job fails again within the cooldown: recorded nowhere, sent nowhere
        again = run_job(defs, instance, f"{FEED}__ingest", "2026-11-03")
        assert not again.success
        tick(defs, instance, name, cursor)
        assert len(notifications()) == 1
        assert len(receiver.received) == 2 and len(mailbox.messages) == 1

    stored = json.dumps(notifications(), default=str)
    assert SECRET_TOKEN not in stored and SMTP_PASSWORD not in stored


def test_a_failed_blocking_check_is_alerted_by_name(tmp_path, channels):
    receiver, _ = channels
    feeds = _feed(tmp_path, validation={"min_rows": 50})
    (feeds / "landing" / "2026-11-02.csv").write_text(GOOD.format(day=2))
    defs = definitions_for(feeds)
    name = f"{FEED}__alert_on_failure"
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = tick(defs, instance, name, None).cursor
        result = run_job(defs, instance, f"{FEED}__ingest", "2026-11-02")
        assert not result.success
        tick(defs, instance, name, cursor)
    (row,) = notifications()
    assert row["kind"] == f"blocking_check_failed:{FEED}__ingest"
    (generic,) = receiver.at(f"/json/{SECRET_TOKEN}")
    assert f"{FEED}/validated:min_rows" in generic["message"]
    (check,) = generic["payload"]["failed_checks"]
    assert check["partition"] == "2026-11-02"


CRITICAL_DEMO = {
    **SMALL_DEMO,
    "name": "demo_alerts",
    "source": {**SMALL_DEMO["source"], "anomaly_rate": 0.05},
    # tiers wide enough that the injected anomalies of a small demo day reach "critical"
    "severity": {"medium": 0.2, "high": 0.1, "critical": 0.05},
    "explanations": {"top_k": 0},
    # one cheap candidate: the test is about the alert, not the choice of a champion
    "lifecycle": {
        "candidates": ["KNN"],
        "max_candidates": 1,
        "n_boot": 100,
        "synthetic_anomalies": 20,
        "min_labelled_anomalies": 10_000,
        "min_auc": 0.0,
    },
}


@pytest.mark.slow
def test_a_day_with_critical_anomalies_sends_one_alert_and_a_repeat_none(
    tmp_path, channels, isolated_home
):
    receiver, mailbox = channels
    seed_mlflow(isolated_home)
    feed = CRITICAL_DEMO["name"]
    write_feed(tmp_path / "feeds", CRITICAL_DEMO)
    defs = definitions_for(tmp_path / "feeds")
    name = f"{feed}__alert_on_critical"
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        # the four days in one run (a single-run backfill of the ingest assets)
        ingest = run_range(defs, instance, f"{feed}__ingest", "2026-11-01", "2026-11-04")
        assert ingest.success, failure_message(ingest)
        train_config = {"ops": {f"{feed}__training_window": {"config": {"end_date": "2026-11-03"}}}}
        assert run_job(defs, instance, f"{feed}__train", run_config=train_config).success
        cursor = tick(defs, instance, name, None).cursor
        assert run_job(defs, instance, f"{feed}__score", "2026-11-04").success
        cursor = tick(defs, instance, name, cursor).cursor
        (row,) = notifications()
        assert row["kind"] == "critical_anomalies" and row["severity"] == "critical"
        (generic,) = receiver.at(f"/json/{SECRET_TOKEN}")
        assert "2026-11-04" in generic["message"]
        assert generic["payload"]["link"] == (
            f"https://dagster.example.com/assets/{feed}/anomaly_scores?partition=2026-11-04"
        )
        assert generic["payload"]["critical_rows"]["2026-11-04"] >= 1
        assert len(mailbox.messages) == 1

        # the day is scored again within the cooldown: no second alert
        assert run_job(defs, instance, f"{feed}__score", "2026-11-04").success
        result = tick(defs, instance, name, cursor)
        assert "suppressed" in (result.skip_message or "")
        assert len(notifications()) == 1 and len(mailbox.messages) == 1


def test_an_incomplete_smtp_setting_is_a_clear_error(monkeypatch):
    from pynomaly_core.alerts import AlertConfigError, channels_from_env

    with pytest.raises(AlertConfigError, match="PYNOMALY_ALERT_EMAIL_TO"):
        channels_from_env({"PYNOMALY_SMTP_HOST": "mail.example.com"})
    with pytest.raises(AlertConfigError, match="PYNOMALY_SMTP_PASSWORD"):
        channels_from_env(
            {
                "PYNOMALY_SMTP_HOST": "mail.example.com",
                "PYNOMALY_ALERT_EMAIL_TO": "a@example.com",
                "PYNOMALY_SMTP_USER": "u",
            }
        )
    assert channels_from_env({}) == []


def test_the_cooldown_is_per_kind(tmp_path):
    from pynomaly_core.alerts import Alert, send_alert

    engine = make_engine(warehouse_url_default())
    now = dt.datetime(2026, 11, 5, 8, 0, tzinfo=dt.UTC)
    cooldown = dt.timedelta(hours=6)

    def alert(kind):
        return Alert(FEED, kind, "critical", "m", "https://ui/runs/1")

    assert send_alert(engine, alert("run_failure:a"), cooldown=cooldown, channels=[], now=now).sent
    later = now + dt.timedelta(hours=1)
    assert send_alert(
        engine, alert("run_failure:b"), cooldown=cooldown, channels=[], now=later
    ).sent
    repeat = send_alert(engine, alert("run_failure:a"), cooldown=cooldown, channels=[], now=later)
    assert not repeat.sent and "within the cooldown" in repeat.suppressed_reason
    after = now + dt.timedelta(hours=7)
    assert send_alert(
        engine, alert("run_failure:a"), cooldown=cooldown, channels=[], now=after
    ).sent
    engine.dispose()


def test_a_failed_automation_run_of_the_feed_is_alerted(tmp_path, channels):
    """Automation runs are runs of Dagster's implicit asset job, not of the feed's jobs: the
    feed's failure sensor still alerts them (by the feed's run tag), and ignores other feeds' runs."""
    feeds = _feed(tmp_path, schedules={"trigger": "automation"})
    (feeds / "landing" / "2026-11-03.csv").write_text("payment_id,paid_at\nq,1\nr,2,3\n")
    defs = definitions_for(feeds)
    name = f"{FEED}__alert_on_failure"
    asset_job = defs.resolve_implicit_global_asset_job_def()
    raw = [dg.AssetKey([FEED, "raw"])]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = tick(defs, instance, name, None).cursor
        other = asset_job.execute_in_process(
            instance=instance,
            asset_selection=raw,
            partition_key="2026-11-03",
            tags={"feed": "another_feed"},
            raise_on_error=False,
        )
        assert not other.success
        cursor = tick(defs, instance, name, cursor).cursor
        assert notifications() == []
        failed = asset_job.execute_in_process(
            instance=instance,
            asset_selection=raw,
            partition_key="2026-11-03",
            tags={"feed": FEED, "pynomaly/trigger": "automation"},
            raise_on_error=False,
        )
        assert not failed.success
        tick(defs, instance, name, cursor)
        rows = notifications()
        assert len(rows) == 1, rows
        assert rows[0]["kind"] == f"run_failure:{asset_job.name}"
        assert failed.run_id in rows[0]["message"] or failed.run_id in str(rows[0])
