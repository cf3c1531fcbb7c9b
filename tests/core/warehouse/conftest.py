"""Fixtures of the warehouse tests; the `engine` fixture (SQLite and PostgreSQL) is in tests/core/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import ANOMALY_TABLE, ensure_table, make_engine


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[sa.Engine]:
    warehouse = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_table(warehouse, ANOMALY_TABLE)
    yield warehouse
    warehouse.dispose()
