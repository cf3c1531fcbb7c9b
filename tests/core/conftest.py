"""Fixtures shared by the core tests."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import make_engine
from tests.pg import temporary_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Engine]:
    """An empty warehouse: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        warehouse = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield warehouse
        warehouse.dispose()
    else:
        with temporary_database() as url:
            warehouse = make_engine(url)
            yield warehouse
            warehouse.dispose()
