"""Shared fixtures: every test gets its own PYNOMALY_HOME so runs never see each other's state."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """A fresh PYNOMALY_HOME (models, frames, SQLite warehouse, signing key) per test."""
    home = tmp_path / "pynomaly_home"
    home.mkdir()
    monkeypatch.setenv("PYNOMALY_HOME", str(home))
    monkeypatch.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("PYNOMALY_WAREHOUSE_SCHEMA", raising=False)
    monkeypatch.delenv("PYNOMALY_FEEDS_DIR", raising=False)
    monkeypatch.delenv("PYNOMALY_SIGNING_KEY", raising=False)
    monkeypatch.delenv("PYNOMALY_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home
