"""The review page's web app: FastAPI, server-rendered Jinja2 templates, HTMX for the updates.

Reads and writes go through :mod:`pynomaly_review.queue` and :mod:`pynomaly_review.verdicts`
(the warehouse layer underneath). Who reviews: behind the authenticating proxy
(``PYNOMALY_REVIEW_TRUST_PROXY=1``) the user nginx authenticated, from ``X-Forwarded-User`` or
``Remote-User`` (the proxy sets both from ``$remote_user`` and overwrites what a client sent);
otherwise ``PYNOMALY_REVIEWER``. Writes are POST only, and refused unless the request is
same-origin (its ``Origin``, else its ``Referer``, names the host it was sent to) and carries
HTMX's ``HX-Request`` header, which a cross-site form cannot send: a page elsewhere cannot make a
reviewer's browser record a verdict.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from pynomaly_core.paths import pynomaly_home
from pynomaly_core.warehouse import SEVERITIES, make_engine, warehouse_url_default
from pynomaly_review import charts
from pynomaly_review.context import (
    feature_values,
    normal_ranges,
    passthrough_values,
    series_around,
)
from pynomaly_review.queue import (
    DayRows,
    QueueFilters,
    decision_threshold,
    feed_days,
    load_day,
    review_queue,
    uncertainty,
)
from pynomaly_review.verdicts import VERDICT_FILTERS, VERDICTS, record_verdict

__all__ = ["ReviewSettings", "create_app"]

STATIC = Path(__file__).parent / "static"
IDENTITY_HEADERS = ("x-forwarded-user", "remote-user")
SHORTCUTS = (
    ("j / ↓", "next row"),
    ("k / ↑", "previous row"),
    ("c", "confirm: a real anomaly"),
    ("r", "reject: a false alarm"),
    ("u", "unsure"),
    ("n", "write a note (Enter records it with the next verdict key, Esc leaves)"),
    ("o / Enter", "show or hide the row's details"),
)


@dataclass(frozen=True)
class ReviewSettings:
    """Where the page reads and writes, and whom it trusts for the reviewer's name."""

    warehouse_url: str
    schema: str | None = None
    frames_dir: Path | None = None
    trust_proxy: bool = False
    reviewer: str | None = None

    @classmethod
    def from_env(cls) -> ReviewSettings:
        """``PYNOMALY_WAREHOUSE_URL`` (else the embedded ``$PYNOMALY_HOME/warehouse.db``),
        ``PYNOMALY_WAREHOUSE_SCHEMA``, ``PYNOMALY_REVIEW_FRAMES_DIR`` (else
        ``$PYNOMALY_HOME/frames``), ``PYNOMALY_REVIEW_TRUST_PROXY``, ``PYNOMALY_REVIEWER``."""
        frames = os.environ.get("PYNOMALY_REVIEW_FRAMES_DIR") or str(pynomaly_home() / "frames")
        return cls(
            warehouse_url=warehouse_url_default(),
            schema=os.environ.get("PYNOMALY_WAREHOUSE_SCHEMA") or None,
            frames_dir=Path(frames),
            trust_proxy=os.environ.get("PYNOMALY_REVIEW_TRUST_PROXY", "") in ("1", "true", "yes"),
            reviewer=os.environ.get("PYNOMALY_REVIEWER") or None,
        )


def create_app(settings: ReviewSettings | None = None, engine: sa.Engine | None = None) -> FastAPI:
    """The review app on ``settings`` (default: :meth:`ReviewSettings.from_env`)."""
    settings = settings or ReviewSettings.from_env()
    engine = engine or make_engine(settings.warehouse_url)
    templates = Environment(
        loader=PackageLoader("pynomaly_review", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    templates.globals.update(
        range_bar=charts.range_bar,
        series_plot=charts.series_plot,
        shap_bars=charts.shap_bars,
        severities=[s for s in SEVERITIES if s != "none"],
        verdict_filters=VERDICT_FILTERS,
        verdicts=VERDICTS,
        shortcuts=SHORTCUTS,
    )
    app = FastAPI(title="Pynomaly review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def reviewer_of(request: Request) -> str | None:
        if settings.trust_proxy:
            for header in IDENTITY_HEADERS:
                value = request.headers.get(header, "").strip()
                if value:
                    return value
            return None
        return settings.reviewer

    def render(name: str, **values: Any) -> str:
        return templates.get_template(name).render(**values)

    def queue_view(
        request: Request,
        feed: str | None,
        day: str | None,
        severity: list[str],
        entity: str | None,
        verdict: str,
        size: int,
        exploration: float,
    ) -> dict[str, Any]:
        days = feed_days(engine, settings.schema)
        feeds = list(dict.fromkeys(days["feed"]))
        # an unknown feed or a day the feed has no scores for falls back to its newest day
        feed = feed if feed in feeds else (feeds[0] if feeds else None)
        feed_days_list = list(days.loc[days["feed"] == feed, "partition_date"])
        day = day if day in feed_days_list else (feed_days_list[0] if feed_days_list else None)
        filters = QueueFilters(
            severity=tuple(s for s in severity if s),
            entity=(entity or "").strip() or None,
            verdict=verdict,
            size=size,
            exploration=exploration,
        )
        view: dict[str, Any] = {
            "feeds": feeds,
            "days": feed_days_list,
            "summary": days,
            "feed": feed,
            "day": day,
            "filters": filters,
            "reviewer": reviewer_of(request),
            "items": [],
            "entity_name": None,
            "entities": [],
        }
        if feed is None or day is None:
            return view
        loaded = load_day(engine, feed, day, settings.schema)
        queue = review_queue(loaded, filters)
        ranges, threshold = day_ranges(loaded), decision_threshold(loaded.rows)
        view.update(
            items=[item(loaded, row, ranges, threshold) for row in queue.to_dict("records")],
            entity_name=loaded.entity_name,
            entities=sorted(loaded.rows["entity"].dropna().unique().tolist())[:500],
            has_ranges=bool(ranges),
        )
        return view

    def day_ranges(loaded: DayRows) -> dict[str, tuple[float, float, float]]:
        attributes = loaded.attributes
        features = sorted(set(attributes.loc[attributes["role"] == "feature", "attribute"]))
        flagged = set(loaded.rows.loc[loaded.rows["is_anomaly"].astype(bool), "record_key"])
        return normal_ranges(settings.frames_dir, loaded.feed, loaded.day, features, flagged)

    def item(
        loaded: DayRows,
        row: dict[str, Any],
        ranges: dict[str, tuple[float, float, float]],
        threshold: float | None,
    ) -> dict[str, Any]:
        """One queue entry with what its details show."""
        series = series_around(loaded.rows, row["record_key"])
        at = (
            int((series["record_key"] == row["record_key"]).to_numpy().argmax())
            if len(series)
            else 0
        )
        shap = [
            (str(row[f"feature_{i}"]), float(row[f"contribution_{i}"]))
            for i in (1, 2, 3)
            if isinstance(row.get(f"feature_{i}"), str) and pd.notna(row.get(f"contribution_{i}"))
        ]
        return {
            **{k: (None if _missing(v) else v) for k, v in row.items()},
            "feed": loaded.feed,
            "day": loaded.day,
            "shap": shap,
            "top": [name for name, _ in shap] or _listed(row.get("top_features")),
            "context": passthrough_values(loaded.attributes, row["record_key"]),
            "features": feature_values(loaded.attributes, row["record_key"], ranges),
            "series": series,
            "series_at": at,
            "threshold": threshold,
        }

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        with engine.connect() as conn:
            conn.execute(sa.select(1))
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(
        request: Request,
        feed: str | None = None,
        day: str | None = None,
        severity: list[str] = Query(default_factory=list),  # noqa: B008
        entity: str | None = None,
        verdict: str = "",
        size: int = 50,
        exploration: float = 0.2,
    ) -> HTMLResponse:
        try:
            view = queue_view(request, feed, day, severity, entity, verdict, size, exploration)
        except ValueError as exc:
            return HTMLResponse(f"<p class=error>{_escape(str(exc))}</p>", status_code=400)
        fragment = (
            request.headers.get("hx-request") == "true"
            and request.headers.get("hx-target") == "queue"
        )
        return HTMLResponse(render("queue.html" if fragment else "page.html", **view))

    @app.get("/api/queue")
    def queue_json(
        request: Request,
        feed: str,
        day: str,
        severity: list[str] = Query(default_factory=list),  # noqa: B008
        entity: str | None = None,
        verdict: str = "",
        size: int = 50,
        exploration: float = 0.2,
    ) -> JSONResponse:
        try:
            filters = QueueFilters(
                severity=tuple(s for s in severity if s),
                entity=entity or None,
                verdict=verdict,
                size=size,
                exploration=exploration,
            )
            loaded = load_day(engine, feed, day, settings.schema)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        queue = review_queue(loaded, filters)
        columns = [
            "position",
            "reason",
            "record_key",
            "event_time",
            "entity",
            "severity",
            "score",
            "p_value",
            "is_anomaly",
            "uncertainty",
            "verdict",
            "reviewer",
            "note",
            "reviewed_at",
        ]
        records = [{k: _json_value(row[k]) for k in columns} for row in queue.to_dict("records")]
        return JSONResponse({"feed": feed, "day": day, "rows": records})

    @app.post("/verdict", response_class=HTMLResponse)
    def post_verdict(
        request: Request,
        feed: str = Form(...),
        day: str = Form(...),
        record_key: str = Form(...),
        verdict: str = Form(...),
        note: str = Form(""),
        position: int = Form(0),
        reason: str = Form("top"),
    ) -> Response:
        refused = _cross_site(request)
        if refused:
            return PlainTextResponse(refused, status_code=403)
        reviewer = reviewer_of(request)
        if reviewer is None:
            message = (
                "no authenticated user: the proxy did not pass one"
                if settings.trust_proxy
                else "no reviewer: set PYNOMALY_REVIEWER to your name before starting the page"
            )
            return PlainTextResponse(message, status_code=401)
        try:
            record_verdict(
                engine,
                feed=feed,
                day=day,
                record_key=record_key,
                verdict=verdict,
                reviewer=reviewer,
                note=note,
                schema=settings.schema,
            )
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=422)
        loaded = load_day(engine, feed, day, settings.schema)
        match = loaded.rows[loaded.rows["record_key"] == record_key]
        ranges = day_ranges(loaded)
        row = match.assign(
            uncertainty=uncertainty(loaded.rows)[match.index], position=position, reason=reason
        ).to_dict("records")[0]
        return HTMLResponse(
            render(
                "row.html",
                it=item(loaded, row, ranges, decision_threshold(loaded.rows)),
                reviewer=reviewer,
            )
        )

    return app


def _listed(value: Any) -> list[str]:
    """The feature names of ``top_features`` (a JSON list, or a dict keyed by name)."""
    if isinstance(value, list | tuple | dict):
        return [str(v) for v in value]
    return []


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _json_value(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


def _cross_site(request: Request) -> str | None:
    """Why a write is refused as possibly cross-site, or None for a same-origin HTMX request."""
    if request.headers.get("hx-request") != "true":
        return "refused: verdicts are recorded from the review page (HX-Request header missing)"
    host = request.headers.get("host", "")
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return "refused: the request names no Origin or Referer"
    if urllib.parse.urlsplit(source).netloc != host:
        return f"refused: cross-origin request from {source!r} to {host!r}"
    return None
