"""Throwaway PostgreSQL databases for tests.

The server is ``$PYNOMALY_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; the URL's database is only used
to run ``CREATE/DROP DATABASE``). When the variable is unset and the default server
is unreachable, tests using it are skipped; when it is set, they fail instead.
Usage in a test module::

    from tests.pg import temporary_database

    @pytest.fixture
    def warehouse_url():
        with temporary_database() as url:
            yield url
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_URL_ENV = "PYNOMALY_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> sa.URL:
    """The test server's URL (psycopg 3 driver)."""
    url = sa.make_url(os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL)
    return url.set(drivername="postgresql+psycopg")


@contextmanager
def temporary_database(prefix: str = "pynomaly_test") -> Iterator[str]:
    """Create database ``<prefix>_<uuid hex>``, yield its URL, then drop it ``WITH (FORCE)``.

    The yielded URL is a plain string with the password, ready for
    ``pynomaly_core.warehouse.make_engine`` or ``sqlalchemy.create_engine``.
    """
    name = f"{prefix}_{uuid.uuid4().hex}"
    admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            if os.environ.get(PG_URL_ENV):
                raise
            pytest.skip(f"PostgreSQL not reachable at {DEFAULT_PG_URL} ({PG_URL_ENV} unset): {exc}")
        try:
            yield server_url().set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
