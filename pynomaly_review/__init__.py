"""The review page: reviewers triage a feed's flagged rows and record verdicts in the warehouse.

A small FastAPI app with server-rendered HTML (Jinja2), HTMX for partial updates and inline SVG
charts; no JavaScript build. It reads and writes only through :mod:`pynomaly_core.warehouse`
and never imports dagster.

Modules
-------
``queue``     the rows to review per feed and day: order, filters, exploration rows
``verdicts``  recording confirm / reject / unsure, idempotent per record
``context``   what a row is judged against: feature values and their normal range, the series
``charts``    inline SVG: SHAP bars, value against its range, the series around the point
``web``       the FastAPI app (:func:`create_app`), identity and CSRF checks
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    # the app imports FastAPI (the [review] extra); the data modules work without it
    if name == "create_app":
        from pynomaly_review.web import create_app

        return create_app
    raise AttributeError(f"module 'pynomaly_review' has no attribute {name!r}")
