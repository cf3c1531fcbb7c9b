"""Warehouse engines and identifiers (pynomaly_core.warehouse.sql)."""

from __future__ import annotations

import pytest

from pynomaly_core.warehouse import make_engine, validate_identifier, warehouse_url_default


@pytest.mark.parametrize("name", ["anomaly_scores", "_x", "A1", "a" * 63])
def test_identifier_accepted(name: str) -> None:
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", "a b", 'x"; DROP TABLE y; --', "a" * 64, "ümlaut", None]
)
def test_identifier_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        validate_identifier(name)


def test_make_engine_urls() -> None:
    for url in ("postgresql://u@db.example/warehouse", "postgres://u@db.example/warehouse"):
        assert make_engine(url).url.drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="driver 'psycopg2'.*psycopg 3"):
        make_engine("postgresql+psycopg2://u@db.example/warehouse")
    with pytest.raises(ValueError, match="PYNOMALY_WAREHOUSE_URL") as failure:
        make_engine("mysql://u:s3cret@db.example/warehouse")
    assert "s3cret" not in str(failure.value)


def test_sqlite_engine_uses_wal(tmp_path) -> None:
    warehouse = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    warehouse.dispose()


def test_warehouse_url_default(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path / "home"))
    assert warehouse_url_default() == f"sqlite:///{tmp_path / 'home' / 'warehouse.db'}"
    assert (tmp_path / "home").is_dir()
    monkeypatch.setenv("PYNOMALY_WAREHOUSE_URL", "postgresql://u@db.example/w")
    assert warehouse_url_default() == "postgresql://u@db.example/w"
