"""Shared fixtures: a fresh app per test, run on a real SQLite file, on PostgreSQL (a throwaway
cluster the test run starts itself, ``pgtest``) and on the reference memory store, with virtual
time."""

from __future__ import annotations

import gc
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import forkguard
import forkserver
import pgtest
import sqlitetest
from stepline import App
from stepline.testing import TestEngine

# a failure is reported as itself, never as a dead worker (see report_guard.py); the run ends
# with the CPU time of its servers and forked processes (cpu_report.py)
pytest_plugins = ["report_guard", "cpu_report"]

# `stepline dev` invoked in-process (CliRunner) serves HTTP: on any free port, so tests running
# at once never fight over 8288
os.environ.setdefault("STEPLINE_PORT", "0")


def pytest_configure(config: pytest.Config) -> None:
    pgtest.configure(config)
    if not hasattr(config, "workerinput") and not os.environ.get(forkserver.SHARED_VARIABLE):
        # the run's test processes share their fork servers (in the run's folder, which the
        # controlling process removes at its end: pgtest); each started its own of each kind
        run = os.environ.get(pgtest.DIR_VARIABLE)
        forkserver.share_in(tempfile.mkdtemp(prefix="stepline-forkservers-", dir=run))
    # every process a test starts with subprocess dies with its test process (forkguard.py)
    forkguard.install(forkserver.guard)


def pytest_unconfigure(config: pytest.Config) -> None:
    pgtest.unconfigure(config)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Any:
    """The automatic collector paused while the tests are collected: the ~1.1 million objects
    the collection makes live until the run ends, so its collections (~440 young, 40 middle and
    4 full ones in each test process, ~0.5 s of CPU) walked them and freed nothing; one
    collection at its end (``pytest_collection_finish``) finds any cycle it left."""
    if not gc.isenabled():
        return (yield)
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What the collection made (~1.1 million objects in a test process: the modules, the
    items, their fixture closures) lives until the run ends: moved out of the collector's
    generations (``gc.freeze``), as the fork servers and ``stepline server`` do, so that a full
    collection walks only what the tests made since. Each walked them all: 11 full collections,
    3.2 s of CPU in 919 tests of tests/unit and tests/server; 0.8 s with them frozen."""
    gc.collect()
    gc.freeze()


# How the suite is spread over its processes (``pytest -n 4 --dist loadscope
# --no-loadscope-reorder``, scripts/test): the tests of a module that share a module- or
# class-scoped fixture (a server, Chromium, SDK apps, a store) run in one process, which sets it up
# once (spread over the 4, each set it up again); every other test is handed out alone, in the
# order collected (the real-process tests in the middle among light ones, the quick unit tests
# last, so no process idles long at the end). The workers collect and see the fixtures; the
# process that hands the tests out only gets their ids: the workers write the modules down in the
# run's folder (``pgtest``'s) for it.
_SHARED = "shared-fixture-modules.json"


# last: after -k and -m deselected what they do (before them, a run whose -m "not slow" left
# test_dev_mode out ran its modules nowhere: review R4)
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _in_dev_mode_only(config, items)
    folder = os.environ.get(pgtest.DIR_VARIABLE)
    if not os.environ.get("PYTEST_XDIST_WORKER") or not folder:
        return
    shared = set()
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope in ("module", "package", "class") for d in defs if d):
            shared.add(item.nodeid.split("::", 1)[0])
    written = Path(folder) / f"{_SHARED}.{os.getpid()}"
    written.write_text(json.dumps(sorted(shared)))
    written.replace(Path(folder) / _SHARED)  # whole, whichever worker writes last


# The modules tests/integration/test_dev_mode.py runs whole under ``python -X dev -W error`` (its
# ``MODULES``, in a pytest process of its own): in a run that collects that test too, they run
# there only, their every test once, under the stricter checks. Run as well in the run itself,
# they cost ~13 s of its processes' time (12.7 s wall-sum at load ~4: 75 tests), for nothing.
_DEV_MODE = "tests/integration/test_dev_mode.py::"


def _in_dev_mode_only(config: pytest.Config, items: list[pytest.Item]) -> None:
    runner = next((item for item in items if item.nodeid.startswith(_DEV_MODE)), None)
    if runner is None:
        return
    modules = {f"{module}::" for module in runner.module.MODULES}
    inside = [item for item in items if item.nodeid.startswith(tuple(modules))]
    if inside:
        config.hook.pytest_deselected(items=inside)
        items[:] = [item for item in items if not item.nodeid.startswith(tuple(modules))]


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        shared: frozenset[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.shared is None:  # read once every worker has collected
                path = Path(os.environ.get(pgtest.DIR_VARIABLE, ".")) / _SHARED
                self.shared = frozenset(json.loads(path.read_text()) if path.exists() else ())
            module = nodeid.split("::", 1)[0]
            return module if module in self.shared else nodeid

    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="session")
def pg_database() -> str:
    """This worker's PostgreSQL database (schema made), in the session's throwaway cluster."""
    from stepline.store.postgres import PostgresStore

    # a run without xdist: named by its pid (tests/integration/test_dev_mode.py runs one inside
    # a test of the run, on the run's cluster)
    worker = os.environ.get("PYTEST_XDIST_WORKER") or f"main{os.getpid()}"
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
def app(tmp_path: Path) -> App:
    """A fresh app (functions are registered by each test), its database in the test's own
    folder: a test that sends with it directly must not write the default
    ``.stepline/stepline.db`` of the folder the tests run in."""
    return App("test-app", db=f"sqlite:///{tmp_path / 'app.db'}")


# App()'s database without db= or STEPLINE_DB, under the folder the tests run in (the checkout)
_DEFAULT_DATABASE = (".stepline/stepline.db", ".stepline/stepline.db-wal")


def _default_database_state(folder: Path) -> list[tuple[int, int] | None]:
    """(mtime, size) of the default database's files under ``folder`` (None: absent)."""
    found: list[tuple[int, int] | None] = []
    for name in _DEFAULT_DATABASE:
        try:
            stat = (folder / name).stat()
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((stat.st_mtime_ns, stat.st_size))
    return found


@pytest.fixture(autouse=True)
def _the_checkout_database_untouched() -> Any:
    """A test that opened App()'s default database in the checkout fails: it left state there
    that the next run (a gate's, a newer schema's) reads, as the gate at 08:02 on 2026-12-07
    did (a database of a newer schema made by another branch's run). Tests give their apps a
    database of their own (``tmp_path``, ``TestEngine``, the ``app`` fixture)."""
    folder = Path.cwd()
    before = _default_database_state(folder)
    yield
    if _default_database_state(folder) != before:
        pytest.fail(
            f"this test (or one running at the same time in another test process) wrote "
            f"{folder / _DEFAULT_DATABASE[0]}: give its App a database of its own"
        )


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
def app_db(store_kind: str, tmp_path: Path) -> str:
    """What ``App(db=...)`` opens for ``store_kind``: a fresh SQLite file in the test's folder,
    the emptied PostgreSQL database's URL, or ``memory://`` (a store of the app's own: apps
    that share a database ask for the other two only, ``store_kind`` parametrized indirect)."""
    if store_kind == "sqlite":
        return f"sqlite:///{sqlitetest.fresh_database(tmp_path / 'app.db')}"
    return "memory://" if store_kind == "memory" else store_kind


@pytest.fixture
def make_engine(app: App, store_kind: str, tmp_path: Path) -> Callable[..., TestEngine]:
    """``async with make_engine() as t:`` runs ``app`` with a worker and a MockClock."""

    def make(**options: Any) -> TestEngine:
        path = tmp_path / "stepline.db"
        if store_kind == "sqlite":
            sqlitetest.fresh_database(path)
        return TestEngine(app, store=pgtest.engine_store(store_kind), path=path, **options)

    return make
