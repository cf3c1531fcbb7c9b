"""System tests: the deployment's real processes (code server, webserver, daemon) on real PostgreSQL."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "system: starts the deployment's services (gRPC code server, dagster-webserver, dagster-daemon) "
        "as real processes against the PostgreSQL server at PYNOMALY_TEST_PG_URL",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # fixtures read item.stash[FAILED] in their finalizers to decide whether to print service logs
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


FAILED = pytest.StashKey[bool]()
