"""Alerts that reach people: where they go (from the environment), what they say, where they link.

The alert sensors of :mod:`pynomaly_assets.defs.alerts` build an :class:`Alert` (a failed run,
a failed blocking check, a day with critical anomalies) and :func:`send_alert` records it in the
warehouse table ``notifications`` and delivers it through :func:`channels_from_env`, at most once
per feed and kind within the cooldown (:func:`pynomaly_core.maintenance.notify.notify`).

Every channel is configured by the deployment's environment, never by a feed file, because
webhook URLs and SMTP passwords are secrets:

* ``PYNOMALY_ALERT_WEBHOOK_URL`` — a generic JSON webhook (falls back to
  ``PYNOMALY_NOTIFY_WEBHOOK_URL``, the maintenance report's);
* ``PYNOMALY_ALERT_SLACK_WEBHOOK_URL`` — a Slack-compatible incoming webhook (``{"text": ...}``);
* ``PYNOMALY_SMTP_HOST`` (with ``PYNOMALY_SMTP_PORT``, default 25; ``PYNOMALY_SMTP_USER`` and
  ``PYNOMALY_SMTP_PASSWORD``; ``PYNOMALY_SMTP_STARTTLS`` or ``PYNOMALY_SMTP_SSL`` = ``true``),
  ``PYNOMALY_ALERT_EMAIL_TO`` (comma-separated) and ``PYNOMALY_ALERT_EMAIL_FROM``;
* ``PYNOMALY_UI_BASE_URL`` — the Dagster UI the links point at (default ``http://localhost:3000``).
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from pynomaly_core.maintenance.notify import (
    WEBHOOK_URL_ENV,
    Channel,
    EmailChannel,
    JsonWebhook,
    NotifyResult,
    SlackWebhook,
    notify,
)

ALERT_WEBHOOK_ENV = "PYNOMALY_ALERT_WEBHOOK_URL"
SLACK_WEBHOOK_ENV = "PYNOMALY_ALERT_SLACK_WEBHOOK_URL"
SMTP_HOST_ENV = "PYNOMALY_SMTP_HOST"
SMTP_PORT_ENV = "PYNOMALY_SMTP_PORT"
SMTP_USER_ENV = "PYNOMALY_SMTP_USER"
SMTP_PASSWORD_ENV = "PYNOMALY_SMTP_PASSWORD"
SMTP_STARTTLS_ENV = "PYNOMALY_SMTP_STARTTLS"
SMTP_SSL_ENV = "PYNOMALY_SMTP_SSL"
EMAIL_TO_ENV = "PYNOMALY_ALERT_EMAIL_TO"
EMAIL_FROM_ENV = "PYNOMALY_ALERT_EMAIL_FROM"
UI_BASE_URL_ENV = "PYNOMALY_UI_BASE_URL"
DEFAULT_UI_BASE_URL = "http://localhost:3000"


class AlertConfigError(ValueError):
    """An alert channel is configured incompletely; the message names the variable."""


@dataclass(frozen=True)
class Alert:
    """One thing a person should look at, with a link to where it is."""

    feed: str
    #: the cooldown key within the feed: ``run_failure:<job>``, ``blocking_check_failed:<job>``,
    #: ``critical_anomalies``
    kind: str
    severity: str
    message: str
    link: str
    details: dict[str, Any] = field(default_factory=dict[str, Any])


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise AlertConfigError(f"{name}={value!r}: use true or false")


def channels_from_env(environ: Mapping[str, str] | None = None) -> list[Channel]:
    """The channels the deployment configured (see the module docstring); none: table only."""
    env = os.environ if environ is None else environ
    channels: list[Channel] = []
    webhook = env.get(ALERT_WEBHOOK_ENV) or env.get(WEBHOOK_URL_ENV)
    if webhook:
        source = ALERT_WEBHOOK_ENV if env.get(ALERT_WEBHOOK_ENV) else WEBHOOK_URL_ENV
        channels.append(JsonWebhook(webhook, env=source))
    if env.get(SLACK_WEBHOOK_ENV):
        channels.append(SlackWebhook(env[SLACK_WEBHOOK_ENV]))
    host = env.get(SMTP_HOST_ENV, "").strip()
    if host:
        channels.append(_email(env, host))
    return channels


def _email(env: Mapping[str, str], host: str) -> EmailChannel:
    recipients = [r.strip() for r in env.get(EMAIL_TO_ENV, "").split(",") if r.strip()]
    if not recipients:
        raise AlertConfigError(
            f"{SMTP_HOST_ENV} is set but {EMAIL_TO_ENV} (comma-separated recipients) is not"
        )
    port_text = env.get(SMTP_PORT_ENV, "").strip() or "25"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AlertConfigError(f"{SMTP_PORT_ENV}={port_text!r} is not a TCP port")
    user = env.get(SMTP_USER_ENV) or None
    password = env.get(SMTP_PASSWORD_ENV) or None
    if user and not password:
        raise AlertConfigError(f"{SMTP_USER_ENV} is set but {SMTP_PASSWORD_ENV} is not")
    return EmailChannel(
        host=host,
        port=int(port_text),
        sender=env.get(EMAIL_FROM_ENV) or f"pynomaly@{host}",
        recipients=recipients,
        user=user,
        password=password,
        starttls=_flag(env, SMTP_STARTTLS_ENV),
        use_ssl=_flag(env, SMTP_SSL_ENV),
    )


def ui_base_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(UI_BASE_URL_ENV) or DEFAULT_UI_BASE_URL).rstrip("/")


def run_link(run_id: str) -> str:
    """The run's page in the Dagster UI."""
    return f"{ui_base_url()}/runs/{run_id}"


def asset_link(key: list[str], partition: str | None = None) -> str:
    """The asset's page in the Dagster UI, on ``partition`` when given."""
    path = "/".join(urllib.parse.quote(part, safe="") for part in key)
    query = f"?partition={urllib.parse.quote(partition, safe='')}" if partition else ""
    return f"{ui_base_url()}/assets/{path}{query}"


def run_failure_alert(
    feed: str,
    job: str,
    run_id: str,
    error: str | None,
    failed_checks: list[dict[str, Any]],
) -> Alert:
    """A failed run; when blocking checks failed in it, the alert names them (their kind differs)."""
    if failed_checks:
        names = ", ".join(f"{c['asset']}:{c['check']}" for c in failed_checks)
        message = f"Run of {job} failed: blocking check(s) {names} failed"
        first = failed_checks[0]
        if first.get("description"):
            message += f" ({first['description']})"
        kind = f"blocking_check_failed:{job}"
    else:
        message = f"Run of {job} failed" + (f": {error}" if error else "")
        kind = f"run_failure:{job}"
    return Alert(
        feed=feed,
        kind=kind,
        severity="critical",
        message=_shorten(message),
        link=run_link(run_id),
        details={"job": job, "run_id": run_id, "failed_checks": failed_checks},
    )


def critical_anomalies_alert(feed: str, days: dict[str, int], asset_key: list[str]) -> Alert:
    """Days whose scoring found critical anomalies (``{partition: critical rows}``)."""
    ordered = sorted(days)
    listed = ", ".join(f"{d} ({days[d]})" for d in ordered)
    return Alert(
        feed=feed,
        kind="critical_anomalies",
        severity="critical",
        message=f"{sum(days.values())} critical anomalies in feed {feed}: {listed}",
        link=asset_link(asset_key, ordered[-1]),
        details={"critical_rows": {d: days[d] for d in ordered}},
    )


def _shorten(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def send_alert(
    engine: sa.Engine,
    alert: Alert,
    *,
    cooldown: dt.timedelta,
    channels: list[Channel] | None = None,
    schema: str | None = None,
    now: dt.datetime | None = None,
) -> NotifyResult:
    """Record and deliver ``alert`` unless one of its feed and kind is within ``cooldown``."""
    return notify(
        engine,
        alert.feed,
        alert.kind,
        alert.message,
        {**alert.details, "link": alert.link},
        webhook_url=None,
        cooldown=cooldown,
        now=now,
        schema=schema,
        severity=alert.severity,
        channels=channels_from_env() if channels is None else channels,
    )
