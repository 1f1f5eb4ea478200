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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """How the suite is spread over its processes (``pytest -n 4 --dist loadgroup
    --no-loadscope-reorder``, scripts/test): the tests of a module that use one of its
    module-scoped fixtures (a server, a browser, SDK apps) run in one process, which sets the
    fixture up once (spread, each process set it up again); every other test is handed out
    alone, in the order collected (the real-process tests in the middle, spread among light
    ones; the quick unit tests last, so no process idles long at the end)."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope in ("module", "package", "class") for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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
