"""Notifications (pynomaly_core.maintenance.notify) on SQLite and PostgreSQL warehouses and a local HTTP webhook."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.maintenance import NotifyResult, notify
from pynomaly_core.warehouse import NOTIFICATIONS_TABLE, make_engine, read_partition


class _Webhook:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies posted to it."""

    def __init__(self, status: int = 200) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "json": json.loads(body),
                    }
                )
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        # the token in the path stands for the secret part of a real webhook URL
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cr3t-t0ken"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    server = _Webhook()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _table_text(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT * FROM "notifications"')).all()
    return json.dumps([[str(v) for v in row] for row in rows])


NOW = dt.datetime(2026, 1, 12, 3, 0, tzinfo=dt.UTC)
COOLDOWN = dt.timedelta(hours=24)


def test_notify_posts_json_records_it_and_honours_the_cooldown(engine, webhook):
    payload = {"reasons": ["drift.drift_share 0.6 is above max_drift_share = 0.5"], "share": 0.6}
    first = notify(
        engine,
        "alpha",
        "weekly_report",
        "thresholds crossed",
        payload,
        webhook_url=webhook.url,
        cooldown=COOLDOWN,
        now=NOW,
    )
    assert first.sent and first.delivered is True and first.error is None
    assert len(webhook.received) == 1
    posted = webhook.received[0]
    assert posted["content_type"] == "application/json" and posted["path"] == "/hooks/s3cr3t-t0ken"
    assert posted["json"]["feed"] == "alpha" and posted["json"]["kind"] == "weekly_report"
    assert (
        posted["json"]["payload"] == payload and posted["json"]["message"] == "thresholds crossed"
    )

    rows = read_partition(engine, NOTIFICATIONS_TABLE, feed="alpha", partition_date="2026-01-12")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["kind"] == "weekly_report" and row["payload"] == payload
    assert row["channel"] == "webhook" and bool(row["delivered"]) and pd.isna(row["delivery_error"])
    assert row["created_at"] == pd.Timestamp(NOW)

    inside = notify(
        engine,
        "alpha",
        "weekly_report",
        "again",
        payload,
        webhook_url=webhook.url,
        cooldown=COOLDOWN,
        now=NOW + dt.timedelta(hours=23),
    )
    assert not inside.sent and inside.delivered is None
    assert "2026-01-12T03:00:00+00:00" in inside.suppressed_reason
    assert len(webhook.received) == 1
    assert _count(engine) == 1

    # another feed or another kind has its own cooldown
    other = notify(
        engine,
        "beta",
        "weekly_report",
        "beta",
        {},
        webhook_url=webhook.url,
        cooldown=COOLDOWN,
        now=NOW + dt.timedelta(hours=1),
    )
    assert other.sent and len(webhook.received) == 2

    after = notify(
        engine,
        "alpha",
        "weekly_report",
        "next week",
        payload,
        webhook_url=webhook.url,
        cooldown=COOLDOWN,
        now=NOW + COOLDOWN + dt.timedelta(seconds=1),
    )
    assert after.sent and after.delivered is True
    assert len(webhook.received) == 3 and webhook.received[-1]["json"]["message"] == "next week"
    assert _count(engine) == 3
    assert "s3cr3t" not in _table_text(engine)


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text('SELECT COUNT(*) FROM "notifications"')).scalar_one())


def test_failing_webhook_is_recorded_without_the_url(engine):
    failing = _Webhook(status=500)
    try:
        result = notify(
            engine,
            "alpha",
            "weekly_report",
            f"see {failing.url}",
            {"link": failing.url},
            webhook_url=failing.url,
            cooldown=COOLDOWN,
            now=NOW,
        )
    finally:
        failing.close()
    assert result.sent and result.delivered is False
    assert "HTTP 500" in result.error and "PYNOMALY_NOTIFY_WEBHOOK_URL" in result.error
    assert len(failing.received) == 1 and "s3cr3t" not in json.dumps(failing.received[0]["json"])
    row = read_partition(
        engine, NOTIFICATIONS_TABLE, feed="alpha", partition_date="2026-01-12"
    ).iloc[0]
    assert not bool(row["delivered"]) and "HTTP 500" in row["delivery_error"]
    assert "s3cr3t" not in _table_text(engine) and "s3cr3t" not in result.error

    # a failed delivery does not hold the next one back, even inside the cooldown
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/s3cr3t-t0ken"
    refused = notify(
        engine,
        "alpha",
        "weekly_report",
        "retry",
        {},
        webhook_url=closed,
        cooldown=COOLDOWN,
        now=NOW + dt.timedelta(minutes=5),
        timeout_s=2.0,
    )
    assert refused.sent and refused.delivered is False and "cannot be reached" in refused.error
    assert "s3cr3t" not in refused.error and "s3cr3t" not in _table_text(engine)
    assert _count(engine) == 2


def test_concurrent_notifications_send_once(engine, webhook):
    start = threading.Barrier(3)

    def send(n: int):
        start.wait()
        return notify(
            engine,
            "alpha",
            "weekly_report",
            f"call {n}",
            {},
            webhook_url=webhook.url,
            cooldown=COOLDOWN,
            now=NOW,
        )

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(send, range(3)))
    assert sum(r.sent for r in results) == 1
    assert len(webhook.received) == 1 and _count(engine) == 1


def test_notify_without_a_webhook_records_only(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    result = notify(
        engine,
        "alpha",
        "weekly_report",
        "recorded",
        {"n": np.int64(3), "x": float("nan")},
        webhook_url=None,
        cooldown=COOLDOWN,
        now=NOW,
    )
    assert result.sent and result.delivered is None and result.error is None
    row = read_partition(
        engine, NOTIFICATIONS_TABLE, feed="alpha", partition_date="2026-01-12"
    ).iloc[0]
    assert row["channel"] == "table" and row["payload"] == {"n": 3, "x": None}
    suppressed = notify(
        engine,
        "alpha",
        "weekly_report",
        "again",
        {},
        webhook_url=None,
        cooldown=COOLDOWN,
        now=NOW + dt.timedelta(hours=1),
    )
    assert not suppressed.sent and "recorded only" in suppressed.suppressed_reason
    engine.dispose()


def test_notify_result_outcome_is_one_line():
    assert (
        NotifyResult(sent=True, suppressed_reason=None, delivered=True, error=None).outcome()
        == "sent"
    )
    assert (
        NotifyResult(sent=True, suppressed_reason=None, delivered=None, error=None).outcome()
        == "sent"
    )
    failed = NotifyResult(sent=True, suppressed_reason=None, delivered=False, error="HTTP 500")
    assert failed.outcome() == "sent, delivery failed: HTTP 500"
    held = NotifyResult(
        sent=False, suppressed_reason="within the cooldown", delivered=None, error=None
    )
    assert held.outcome() == "suppressed: within the cooldown"
