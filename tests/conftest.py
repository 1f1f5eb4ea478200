"""Shared fixtures: a fresh app per test, run on a real SQLite file, on PostgreSQL (a throwaway
cluster the test run starts itself, ``pgtest``) and on the reference memory store, with virtual
time."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pgtest
import sqlitetest
from stepline import App
from stepline.testing import TestEngine

# `stepline dev` invoked in-process (CliRunner) serves HTTP: on any free port, so tests running
# at once never fight over 8288
os.environ.setdefault("STEPLINE_PORT", "0")


def pytest_configure(config: pytest.Config) -> None:
    pgtest.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    pgtest.unconfigure(config)


# How the suite is spread over its processes (``pytest -n 4 --dist loadscope
# --no-loadscope-reorder``, scripts/test): the tests of these modules share a module-scoped (or
# class-scoped) fixture (a server, Chromium, SDK apps, a store) and run in one process, which sets
# it up once (spread over the 4, each set it up again); every other test is handed out alone, in
# the order collected (the real-process tests in the middle among light ones, the quick unit
# tests last, so no process idles long at the end). A module that starts sharing such a fixture
# must be listed (the collection fails until it is).
SHARED_FIXTURE_MODULES = frozenset(
    {
        "tests/acceptance/test_cli.py",
        "tests/acceptance/test_cli_remote.py",
        "tests/dashboard/test_dashboard_browser.py",
        "tests/inngest/test_dev_gql.py",
        "tests/inngest/test_inngest_ai.py",
        "tests/inngest/test_inngest_checkpoint.py",
        "tests/inngest/test_inngest_driver.py",
        "tests/inngest/test_inngest_large.py",
        "tests/inngest/test_inngest_parallel.py",
        "tests/inngest/test_inngest_planned.py",
        "tests/inngest/test_inngest_python.py",
        "tests/inngest/test_inngest_sdks.py",
        "tests/inngest/test_inngest_state.py",
        "tests/inngest/test_mixed_apps_browser.py",
        "tests/store/test_lease_property.py",
    }
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in SHARED_FIXTURE_MODULES else nodeid

    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unlisted = set()
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope in ("module", "package", "class") for d in defs if d):
            unlisted.add(item.nodeid.split("::", 1)[0])
    unlisted -= SHARED_FIXTURE_MODULES
    if unlisted:
        raise pytest.UsageError(
            f"{', '.join(sorted(unlisted))}: a module-scoped fixture is shared by these tests: "
            "add the module to SHARED_FIXTURE_MODULES in tests/conftest.py"
        )


@pytest.fixture(scope="session")
def pg_database() -> str:
    """This worker's PostgreSQL database (schema made), in the session's throwaway cluster."""
    from stepline.store.postgres import PostgresStore

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    url = pgtest.create_database(pgtest.cluster(), f"stepline_{worker}")
    store = PostgresStore(url)
    store.migrate()
    store.close()
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """This worker's PostgreSQL database, emptied for the test (the schema stays)."""
    pgtest.empty_database(pg_database)
    return pg_database


@pytest.fixture
def app() -> App:
    """A fresh app (functions are registered by each test)."""
    return App("test-app")


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every store: engine tests run on a real SQLite file, on the reference store and on
    PostgreSQL ("sqlite", "memory", or the URL of this worker's emptied PostgreSQL database:
    what ``TestEngine(store=...)`` takes)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    kind: str = request.param
    return kind


@pytest.fixture
def make_engine(app: App, store_kind: str, tmp_path: Path) -> Callable[..., TestEngine]:
    """``async with make_engine() as t:`` runs ``app`` with a worker and a MockClock."""

    def make(**options: Any) -> TestEngine:
        path = tmp_path / "stepline.db"
        if store_kind == "sqlite":
            sqlitetest.fresh_database(path)
        return TestEngine(app, store=store_kind, path=path, **options)

    return make
