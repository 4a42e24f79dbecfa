"""Shared fixtures. Namespace tests skip with a reason where they cannot run, except when
ONESERVICE_REQUIRE_INTEGRATION=1 (CI): there a missing requirement fails the run, so CI can
never pass by skipping the tests that prove the product works."""

from __future__ import annotations

import os

import pytest

from tests.testbed import Testbed, missing_requirements, sweep_stale_namespaces


def _require(need_tun: bool) -> None:
    reason = missing_requirements(need_tun=need_tun)
    if reason is None:
        return
    if os.environ.get("ONESERVICE_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"integration test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces():
    if missing_requirements() is None:
        sweep_stale_namespaces()


@pytest.fixture
def testbed():
    _require(need_tun=True)
    bed = Testbed()
    try:
        yield bed
    finally:
        complaints = bed.cleanup()
    if complaints:
        pytest.fail("; ".join(complaints))


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (tests/postgres.py)."""
    from tests.postgres import PostgresServer, find_binaries

    if find_binaries() is None:
        reason = "PostgreSQL is not installed (Debian package postgresql)"
        if os.environ.get("ONESERVICE_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"PostgreSQL tests cannot run: {reason}")
        pytest.skip(reason)
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres(postgres_server) -> str:
    """The connection string of a fresh, empty database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(autouse=True)
def _forget_nodes():
    from tests.integration.nodes import Node

    Node.started.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the logs of the nodes it started."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        from tests.integration.nodes import Node

        for node in Node.started:
            report.sections.append((f"node log: {node.home}", "\n".join(node.log[-60:])))
