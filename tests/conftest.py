"""Shared fixtures: every test gets its own PYNOMALY_HOME so runs never see each other's state."""

from __future__ import annotations

import pytest

#: fixtures shared by several directories (the local S3 server of tests/s3server.py)
pytest_plugins = ["tests.s3server"]


@pytest.fixture(scope="session", autouse=True)
def signing_key_file(tmp_path_factory):
    """The model signing key file for the whole session, outside every test's PYNOMALY_HOME.

    Session-wide (module-scoped pipelines and the processes they start inherit it) and never the
    developer's own ``~/.config/pynomaly/signing_key``; tests that need another key set one.
    """
    path = tmp_path_factory.mktemp("signing") / "signing_key"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYNOMALY_SIGNING_KEY_FILE", str(path))
        yield path


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


#: files under these folders run whole asset graphs, servers and workers (tens of seconds to
#: minutes a file): scheduled first, so the two xdist workers end on the many short core tests
#: instead of one worker finishing a long graph file while the other idles
_HEAVY_FIRST = (
    "tests/docs/test_run_a_feed.py",  # the longest file: every documented command, each a process
    "tests/system/",
    "tests/assets/",
    "tests/review/",
    "tests/benchmarks/",
    "tests/docs/",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy folders first (in the order above), each file's tests kept together; with
    ``--dist loadfile --no-loadscope-reorder`` (scripts/test.sh) xdist hands out files in this order."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.replace("\\", "/")
        for i, prefix in enumerate(_HEAVY_FIRST):
            if path.startswith(prefix):
                return i
        return len(_HEAVY_FIRST)

    items.sort(key=rank)
