"""Notifications: record one in the warehouse table ``notifications`` and post it to a webhook.

:func:`notify` writes through the warehouse layer (:data:`~pynomaly_core.warehouse.NOTIFICATIONS_TABLE`,
:func:`~pynomaly_core.warehouse.insert_rows`, :func:`~pynomaly_core.warehouse.select_rows`,
:func:`~pynomaly_core.warehouse.upsert_rows`), at most once per feed and kind within a cooldown.
The webhook URL is a secret: it is written nowhere.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from pynomaly_core.maintenance.report import json_safe
from pynomaly_core.warehouse import (
    NOTIFICATION_SEVERITIES,
    NOTIFICATIONS_TABLE,
    ensure_table,
    insert_rows,
    lock_rows,
    select_rows,
    upsert_rows,
)

__all__ = ["WEBHOOK_URL_ENV", "NotifyResult", "notify"]

WEBHOOK_URL_ENV = "PYNOMALY_NOTIFY_WEBHOOK_URL"


@dataclass
class NotifyResult:
    """What :func:`notify` did."""

    sent: bool
    """A notification was recorded (and posted when a webhook URL was given)."""
    suppressed_reason: str | None
    delivered: bool | None
    """None when no webhook URL was given or nothing was sent."""
    error: str | None
    notification_id: str | None = None

    def outcome(self) -> str:
        """One line for a report: ``sent``, ``sent, delivery failed: <error>`` or ``suppressed: <why>``."""
        if not self.sent:
            return f"suppressed: {self.suppressed_reason}"
        return "sent" if self.delivered in (None, True) else f"sent, delivery failed: {self.error}"


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(
            f"now must be timezone-aware (e.g. datetime.now(timezone.utc)), got naive {moment}"
        )
    return moment.astimezone(dt.UTC)


def notify(
    engine: sa.Engine,
    feed: str,
    kind: str,
    message: str,
    payload: dict,
    *,
    webhook_url: str | None,
    cooldown: dt.timedelta,
    now: dt.datetime | None = None,
    schema: str | None = None,
    timeout_s: float = 5.0,
    severity: str = "warning",
) -> NotifyResult:
    """Record a notification in table ``notifications`` and POST it to the webhook, unless one is recent.

    Suppressed (nothing written, nothing posted) when a notification of the same ``feed`` and
    ``kind`` was recorded after ``now - cooldown`` and was delivered, is still in flight, or
    was only recorded (no webhook); one whose delivery *failed* does not hold back the next.
    Otherwise the row is committed first (so a concurrent call is suppressed), then posted as
    JSON ``{"notification_id", "feed", "kind", "severity", "created_at", "message", "payload"}``
    and updated with the outcome. A failing webhook is recorded (``delivered`` false,
    ``delivery_error``) and does not raise. The webhook URL is a secret: it is written nowhere
    (occurrences in ``message`` or ``payload`` are replaced by ``***``).
    """
    if not isinstance(kind, str) or not kind.strip() or "\x00" in kind:
        raise ValueError(f"notification kind must be a non-empty string, got {kind!r}")
    if severity not in NOTIFICATION_SEVERITIES:
        raise ValueError(
            f"notification severity {severity!r}: allowed {list(NOTIFICATION_SEVERITIES)}"
        )
    if cooldown < dt.timedelta(0):
        raise ValueError(f"notification cooldown must not be negative, got {cooldown}")
    moment = _utc(now or dt.datetime.now(dt.UTC))
    webhook_url = webhook_url or None
    message = _redact(str(message), webhook_url)
    payload_text = _redact(json.dumps(json_safe(payload), allow_nan=False), webhook_url)
    row = _notification_row(kind, moment, severity, message, payload_text, webhook_url is not None)
    notification_id = str(row.at[0, "notification_id"])
    partition = {"feed": feed, "partition_date": moment.date().isoformat(), "schema": schema}

    ensure_table(engine, NOTIFICATIONS_TABLE, schema)
    holding = _record_unless_recent(engine, row, moment - cooldown, **partition)
    if holding is not None:
        return NotifyResult(
            sent=False,
            delivered=None,
            error=None,
            suppressed_reason=_suppressed_reason(holding, feed, kind, cooldown),
        )
    if webhook_url is None:
        return NotifyResult(
            sent=True,
            suppressed_reason=None,
            delivered=None,
            error=None,
            notification_id=notification_id,
        )
    body = json.dumps(
        {
            "notification_id": notification_id,
            "feed": feed,
            "kind": kind,
            "severity": severity,
            "created_at": moment.isoformat(),
            "message": message,
            "payload": json.loads(payload_text),
        }
    ).encode()
    error = _post(webhook_url, body, timeout_s)
    if error is not None:
        error = _redact(error, webhook_url)
    outcome = row.assign(
        delivered=pd.array([error is None], dtype="boolean"), delivery_error=[error]
    )
    upsert_rows(engine, NOTIFICATIONS_TABLE, outcome, **partition)
    return NotifyResult(
        sent=True,
        suppressed_reason=None,
        delivered=error is None,
        error=error,
        notification_id=notification_id,
    )


def _notification_row(
    kind: str, moment: dt.datetime, severity: str, message: str, payload_text: str, webhook: bool
) -> pd.DataFrame:
    """The notification's row of ``NOTIFICATIONS_TABLE``, not delivered yet (``delivered`` NULL)."""
    return pd.DataFrame(
        {
            "notification_id": [uuid.uuid4().hex],
            "kind": [kind],
            "created_at": [pd.Timestamp(moment)],
            "severity": [severity],
            "message": [message],
            "payload": [payload_text],
            "channel": ["webhook" if webhook else "table"],
            "delivered": pd.array([None], dtype="boolean"),
            "delivery_error": pd.Series([None], dtype=object),
        }
    )


def _record_unless_recent(
    engine: sa.Engine,
    row: pd.DataFrame,
    since: dt.datetime,
    *,
    feed: str,
    partition_date: str,
    schema: str | None,
) -> pd.Series | None:
    """Commit ``row`` unless a notification of its feed and kind recorded after ``since`` holds the cooldown.

    One transaction. The insert comes first: on SQLite it takes the write lock, so a concurrent
    call waits there and then sees this row in its cooldown query; on PostgreSQL an advisory lock
    per feed and kind serializes them. When an earlier notification (delivered, in flight or
    recorded only; not a failed one) holds the cooldown, the insert is rolled back and the latest
    such notification is returned.
    """
    kind = str(row.at[0, "kind"])
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            lock_rows(conn, NOTIFICATIONS_TABLE, feed, kind, "notify", schema=schema)
            insert_rows(
                conn,
                NOTIFICATIONS_TABLE,
                row,
                feed=feed,
                partition_date=partition_date,
                schema=schema,
            )
            recent = select_rows(
                conn,
                NOTIFICATIONS_TABLE,
                equal={"feed": feed, "kind": kind},
                after={"created_at": since},
                schema=schema,
            )
            others = recent["notification_id"] != row.at[0, "notification_id"]
            holding = recent[others & recent["delivered"].fillna(True).astype(bool)]
            if len(holding):
                transaction.rollback()
                return holding.sort_values("created_at").iloc[-1]
            transaction.commit()
            return None
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise


def _suppressed_reason(holding: pd.Series, feed: str, kind: str, cooldown: dt.timedelta) -> str:
    when = holding["created_at"].to_pydatetime()
    delivered = holding["delivered"]
    state = (
        "recorded only"
        if holding["channel"] == "table"
        else ("delivered" if pd.notna(delivered) and bool(delivered) else "delivery in flight")
    )
    return (
        f"a {kind!r} notification of feed {feed!r} was sent at {when.isoformat()} ({state}), "
        f"within the cooldown of {cooldown}; the next one is allowed after "
        f"{(when + cooldown).isoformat()}"
    )


def _redact(text: str, secret: str | None) -> str:
    """``text`` without the webhook URL or its path/query (where webhook tokens live)."""
    if not secret:
        return text
    parts = urllib.parse.urlsplit(secret)
    for piece in (
        secret,
        secret.rstrip("/"),
        parts.path + (f"?{parts.query}" if parts.query else ""),
        parts.query,
        parts.netloc,
    ):
        if piece and len(piece) > 1 and piece != "/":
            text = text.replace(piece, "***")
    return text


def _post(url: str, body: bytes, timeout_s: float) -> str | None:
    """POST ``body``; the error (None on a 2xx answer), never containing the URL."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return f"notification webhook ({WEBHOOK_URL_ENV}) must be an http(s) URL, got scheme {scheme!r}"
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "pynomaly-maintenance"},
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout_s
        ) as response:  # the scheme is checked above
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"notification webhook ({WEBHOOK_URL_ENV}) answered HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"notification webhook ({WEBHOOK_URL_ENV}) cannot be reached: {exc.reason}"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"notification webhook ({WEBHOOK_URL_ENV}) failed: {type(exc).__name__}: {exc}"
    if not 200 <= status < 300:
        return f"notification webhook ({WEBHOOK_URL_ENV}) answered HTTP {status}"
    return None
