"""Notifications: record one in the warehouse table ``notifications`` and deliver it.

:func:`notify` writes through the warehouse layer (:data:`~pynomaly_core.warehouse.NOTIFICATIONS_TABLE`,
:func:`~pynomaly_core.warehouse.insert_rows`, :func:`~pynomaly_core.warehouse.select_rows`,
:func:`~pynomaly_core.warehouse.upsert_rows`), at most once per feed and kind within a cooldown,
then delivers it to each channel: a generic JSON webhook (:class:`JsonWebhook`), a
Slack-compatible webhook (:class:`SlackWebhook`, a ``text`` payload) or e-mail over SMTP
(:class:`EmailChannel`). Webhook URLs and SMTP passwords are secrets: they are written nowhere.
"""

from __future__ import annotations

import datetime as dt
import email.message
import http.client
import json
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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

__all__ = [
    "WEBHOOK_URL_ENV",
    "Channel",
    "EmailChannel",
    "JsonWebhook",
    "NotifyResult",
    "SlackWebhook",
    "notify",
]

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
    payload: dict[str, Any],
    *,
    webhook_url: str | None,
    cooldown: dt.timedelta,
    now: dt.datetime | None = None,
    schema: str | None = None,
    timeout_s: float = 5.0,
    severity: str = "warning",
    channels: Sequence[Channel] = (),
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

    ``channels`` deliver it too (``webhook_url`` is the same as a :class:`JsonWebhook` first in
    the list); ``delivered`` is true when every channel accepted it, and ``delivery_error`` names
    each channel that did not. ``channel`` is the one channel's name, ``multiple`` or ``table``.
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
    channels = [*([JsonWebhook(webhook_url, timeout_s)] if webhook_url else []), *channels]
    secrets = [s for c in channels for s in c.secrets()]
    message = _redact_all(str(message), secrets)
    payload_text = _redact_all(json.dumps(json_safe(payload), allow_nan=False), secrets)
    names = {c.name for c in channels}
    channel = "table" if not names else (names.pop() if len(names) == 1 else "multiple")
    row = _notification_row(kind, moment, severity, message, payload_text, channel)
    notification_id = str(row.at[0, "notification_id"])
    partition: dict[str, Any] = {
        "feed": feed,
        "partition_date": moment.date().isoformat(),
        "schema": schema,
    }

    _ensure_table(engine, schema)
    holding = _record_unless_recent(engine, row, moment - cooldown, **partition)
    if holding is not None:
        return NotifyResult(
            sent=False,
            delivered=None,
            error=None,
            suppressed_reason=_suppressed_reason(holding, feed, kind, cooldown),
        )
    if not channels:
        return NotifyResult(
            sent=True,
            suppressed_reason=None,
            delivered=None,
            error=None,
            notification_id=notification_id,
        )
    body = {
        "notification_id": notification_id,
        "feed": feed,
        "kind": kind,
        "severity": severity,
        "created_at": moment.isoformat(),
        "message": message,
        "payload": json.loads(payload_text),
    }
    errors = []
    for target in channels:
        failed = target.send(body)
        if failed is not None:
            prefix = f"{target.name}: " if len(channels) > 1 else ""
            errors.append(prefix + _redact_all(failed, secrets))
    error = "; ".join(errors) or None
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


def _ensure_table(engine: sa.Engine, schema: str | None) -> None:
    """Create table ``notifications`` if needed. Two first notifications at once (alert sensors,
    a maintenance run) race in PostgreSQL's ``CREATE ... IF NOT EXISTS``; the loser's retry finds
    what the winner created."""
    try:
        ensure_table(engine, NOTIFICATIONS_TABLE, schema)
    except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
        ensure_table(engine, NOTIFICATIONS_TABLE, schema)


def _notification_row(
    kind: str, moment: dt.datetime, severity: str, message: str, payload_text: str, channel: str
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
            "channel": [channel],
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


def _post(url: str, body: bytes, timeout_s: float, env: str = WEBHOOK_URL_ENV) -> str | None:
    """POST ``body``; the error (None on a 2xx answer), never containing the URL."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return f"notification webhook ({env}) must be an http(s) URL, got scheme {scheme!r}"
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "pynomaly-maintenance"},
    )
    try:
        with urllib.request.urlopen(  # nosec B310: the scheme is restricted to http(s) above
            request, timeout=timeout_s
        ) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"notification webhook ({env}) answered HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"notification webhook ({env}) cannot be reached: {exc.reason}"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"notification webhook ({env}) failed: {type(exc).__name__}: {exc}"
    if not 200 <= status < 300:
        return f"notification webhook ({env}) answered HTTP {status}"
    return None


def _redact_all(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = _redact(text, secret)
    return text


class Channel:
    """Where a notification goes besides the warehouse table. ``send`` returns the error (None
    when the receiver accepted it) and never raises; ``secrets`` are redacted everywhere."""

    name = "webhook"

    def send(self, body: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        return []


@dataclass
class JsonWebhook(Channel):
    """POST the notification as JSON (``notification_id, feed, kind, severity, created_at,
    message, payload``) to any HTTP receiver."""

    url: str
    timeout_s: float = 5.0
    env: str = WEBHOOK_URL_ENV
    name = "webhook"

    def send(self, body: dict[str, Any]) -> str | None:
        return _post(self.url, json.dumps(body).encode(), self.timeout_s, env=self.env)

    def secrets(self) -> list[str]:
        return [self.url]


def _link(body: dict[str, Any]) -> str | None:
    link = body.get("payload", {}).get("link") if isinstance(body.get("payload"), dict) else None
    return str(link) if link else None


def _headline(body: dict[str, Any]) -> str:
    return f"[{body['severity']}] {body['feed']}: {body['kind']}"


@dataclass
class SlackWebhook(Channel):
    """POST ``{"text": ...}``: what Slack incoming webhooks (and Mattermost, Rocket.Chat, Teams
    workflows) accept; the link in Slack's ``<url|label>`` form."""

    url: str
    timeout_s: float = 5.0
    env: str = "PYNOMALY_ALERT_SLACK_WEBHOOK_URL"
    name = "slack"

    def send(self, body: dict[str, Any]) -> str | None:
        link = _link(body)
        text = f"*{_headline(body)}*\n{body['message']}"
        if link:
            text += f"\n<{link}|Open in Dagster>"
        return _post(self.url, json.dumps({"text": text}).encode(), self.timeout_s, env=self.env)

    def secrets(self) -> list[str]:
        return [self.url]


@dataclass
class EmailChannel(Channel):
    """E-mail over SMTP (STARTTLS when ``starttls``, implicit TLS when ``ssl``); the password is
    a secret read from the environment by :mod:`pynomaly_core.alerts`."""

    host: str
    port: int
    sender: str
    recipients: list[str]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout_s: float = 10.0
    name = "email"

    def send(self, body: dict[str, Any]) -> str | None:
        mail = email.message.EmailMessage()
        mail["Subject"] = f"[pynomaly] {_headline(body)}"
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        link = _link(body)
        details = json.dumps(body.get("payload", {}), indent=2, sort_keys=True)
        mail.set_content(
            f"{body['message']}\n\n"
            + (f"Open: {link}\n\n" if link else "")
            + f"Details:\n{details}\n"
        )
        try:
            factory: Callable[..., smtplib.SMTP] = (
                smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
            )
            kwargs: dict[str, Any] = (
                {"context": ssl.create_default_context()} if self.use_ssl else {}
            )
            with factory(self.host, self.port, timeout=self.timeout_s, **kwargs) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            return f"SMTP server {self.host}:{self.port}: {type(exc).__name__}: {exc}"
        return None

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []
