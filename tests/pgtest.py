"""The test run's PostgreSQL: one throwaway cluster per pytest session (shared by the xdist
workers), one database per worker, emptied before each test that uses it.

The controlling pytest process names a folder (``STEPLINE_TEST_PG_DIR``) when it starts; the
first test that needs PostgreSQL starts the cluster there (under a file lock, so workers start
one between them); the controlling process stops it and removes the folder at the end. Without
PostgreSQL's binaries a test that needs it is skipped, or fails under ``CI=true`` (``1``,
``yes``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import pytest

import sqlitetest
from pgcluster import (
    TEMPLATE_VARIABLE,
    WATCH_PID_VARIABLE,
    Cluster,
    NoPostgres,
    start_cluster,
    stop_cluster,
)
from stepline.store import MemoryStore, SQLiteStore
from stepline.store.interface import Store
from stepline.store.postgres import PostgresStore
from stepline.store.postgres._statements import _quiet
from stepline.store.postgres.presence import Presence

DIR_VARIABLE = "STEPLINE_TEST_PG_DIR"
_STATE = "cluster.json"


def configure(config: pytest.Config) -> None:
    """In the controlling process: name the folder the cluster will live in (starts nothing)."""
    if hasattr(config, "workerinput") or os.environ.get(DIR_VARIABLE):
        return
    folder = tempfile.mkdtemp(prefix="stepline-pg-")
    os.chmod(folder, 0o755)  # PostgreSQL's own user must reach the folders inside
    os.environ[DIR_VARIABLE] = folder
    os.environ[WATCH_PID_VARIABLE] = str(os.getpid())  # clusters stop when this run ends
    # every cluster of the run (the session's, the tests' own) starts from one initdb (a run
    # started by a test, tests/integration/test_dev_mode.py, is handed its parent's)
    os.environ.setdefault(TEMPLATE_VARIABLE, os.path.join(folder, "template"))
    config.stash[_OWNER] = True


def unconfigure(config: pytest.Config) -> None:
    """In every process: close its connections; in the controlling process: stop the cluster
    (if a test started it), remove the folder."""
    while _emptiers:
        _emptiers.popitem()[1].close()
    while _keepers:
        _keepers.popitem()[1].close()
    while _presences:
        _presences.popitem()[1].end()
    if not config.stash.get(_OWNER, False):
        return
    folder = Path(os.environ.pop(DIR_VARIABLE))
    os.environ.pop(TEMPLATE_VARIABLE, None)
    state = folder / _STATE
    if state.exists():
        stop_cluster(Cluster(**json.loads(state.read_text())))
    shutil.rmtree(folder, ignore_errors=True)


_OWNER = pytest.StashKey[bool]()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cluster() -> Cluster:
    """The session's cluster, started by the first caller."""
    folder = Path(os.environ.get(DIR_VARIABLE) or tempfile.mkdtemp(prefix="stepline-pg-"))
    os.environ[DIR_VARIABLE] = str(folder)
    folder.chmod(0o755)  # PostgreSQL's own user must reach the cluster's folder inside
    with _locked(folder):
        state = folder / _STATE
        if state.exists():
            return Cluster(**json.loads(state.read_text()))
        failed = folder / "failed"
        if failed.exists():
            _missing(failed.read_text())
        try:
            (folder / "cluster").mkdir(exist_ok=True)
            started = start_cluster(folder / "cluster")
        except NoPostgres as exc:
            failed.write_text(str(exc))
            _missing(str(exc))
        state.write_text(json.dumps(asdict(started)))
        return started


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):  # as tests/inngest/conftest.py
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


def create_database(found: Cluster, name: str) -> str:
    """A new empty database ``name`` (dropped first if it exists); returns its URL."""
    with psycopg.connect(found.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return found.url(name)


def empty_database(url: str) -> None:
    """Delete every row of Stepline's tables (the schema stays), once no other session of the
    database holds an advisory lock (``_HELD``)."""
    try:
        held = _empty(_emptier(url))
    except psycopg.OperationalError:  # a test ended every session of the database: again
        _emptiers.pop(url).close()
        held = _empty(_emptier(url))
    if held:
        _until_released(_emptier(url))
    keeper = _keepers.get(url)
    if keeper is not None:  # the warm stores' connections, those a test broke replaced
        _replace_broken(keeper._pool)
        _replace_broken(keeper._read_pool)


def _replace_broken(pool: psycopg_pool.ConnectionPool[Any]) -> None:
    """``pool.check()`` (each idle connection checked by a round trip, the broken ones
    replaced) when one of its idle connections is not quiet (``_quiet``: one a test ended, or
    the server did, has that end waiting to be read; one a test closed is closed). Called before
    every test, ``check()`` cost ~20 round trips a test, and grew each pool by a connection
    (psycopg_pool lets a pool it checks grow) until each test process held 20 sessions."""
    with pool._lock:
        idle = list(pool._pool)
    if not all(_quiet(conn) for conn in idle):
        pool.check()


class WarmStore(PostgresStore):
    """A test's PostgresStore whose connection pools are its process's (``warm_store``): open
    from one test to the next, so a test pays no server session starts for them, and their
    sessions' catalog caches and prepared plans are warm; so is its presence session
    (``KeptPresence``) unless another open store of the process has it. Everything else is the
    store's own, fresh for each test (its listener session, its caches of leases, hints, the
    trigger catalog and the take gates)."""

    def __init__(self, url: str, keeper: PostgresStore) -> None:
        super().__init__(url)
        self._spent = self._pool, self._read_pool  # its own: never opened
        self._pool, self._read_pool = keeper._pool, keeper._read_pool
        self._opened = True
        self._kept: KeptPresence | None = None
        kept = _presences.setdefault(url, KeptPresence(url))
        if not kept.in_use:
            kept.in_use = True
            self._kept, self._presence = kept, kept  # its own Presence: never connected

    def close(self) -> None:
        self._opened = False  # the pools stay open for the next test
        super().close()  # the kept presence releases its locks, its session stays
        # used after close, a real store's pools raise PoolClosed: so do this one's (its own
        # pools, never opened, marked spent), so that an engine thread touching the store after
        # its test ended fails that test instead of writing into the next test's database
        self._pool, self._read_pool = self._spent
        for pool in self._spent:
            pool._opened = True  # opened and closed: psycopg_pool refuses to (re)open it
        if self._kept is not None:  # for the next store; this one's presence as a closed one
            self._kept.in_use, self._kept = False, None
            self._presence = Presence(self.url)


class KeptPresence(Presence):
    """A presence (presence.py) whose session is kept from one test to the next: lent to one
    ``WarmStore`` at a time; closing it releases the locks it holds (``pg_advisory_unlock_all``:
    what the end of its session did, for the other sessions) and keeps the session. A session
    start cost ~7 ms of CPU (client and server), and each PostgreSQL test that leases started
    one."""

    in_use = False

    def close(self) -> None:
        with self._lock:
            conn = self._conn
            if self._held and conn is not None and not conn.closed:
                try:
                    conn.execute("SELECT pg_advisory_unlock_all()")
                except psycopg.Error:
                    self._drop()  # its session's end released them
            self._held.clear()

    def end(self) -> None:
        """End its session (the test process ends)."""
        super().close()


def warm_store(url: str) -> PostgresStore:
    """A fresh PostgresStore on the emptied database ``url`` whose connection pools are this
    process's (``WarmStore``). A PostgreSQL TestEngine's store opened 5 to 6 sessions, each a
    backend start with cold caches: a TestEngine that runs one step cost the server 68-120 ms
    of CPU, 26 ms with its pools kept (and 131-177 ms of wall time against 57; at load ~10)."""
    keeper = _keepers.get(url)
    if keeper is None:
        keeper = _keepers[url] = PostgresStore(url)
        keeper._open()
    return WarmStore(url, keeper)


_keepers: dict[str, PostgresStore] = {}  # the pools of each database, kept across tests
_presences: dict[str, KeptPresence] = {}  # the presence session of each database, the same


def engine_store(kind: str) -> str | PostgresStore:
    """What ``TestEngine(store=...)`` is given for a ``store_kind`` ("memory", "sqlite" or the
    emptied database's URL): a URL becomes a ``warm_store``."""
    if kind.startswith(("postgresql://", "postgres://")):
        return warm_store(kind)
    return kind


def opened_store(kind: str, path: Path) -> Store:
    """A store of ``kind`` opened in this process ("memory"; "sqlite": a fresh file at ``path``;
    or the emptied database's URL: a ``warm_store``), for a test that drives the engine itself."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        sqlitetest.fresh_database(path)
        return SQLiteStore(path, synchronous="NORMAL")
    return warm_store(kind)


# one connection per database for emptying it before each test (a connection of its own for
# each cost the server a backend start, ~5 ms of CPU, for each of ~800 tests)
_emptiers: dict[str, psycopg.Connection[Any]] = {}


def _emptier(url: str) -> psycopg.Connection[Any]:
    if url not in _emptiers:
        _emptiers[url] = psycopg.connect(url, autocommit=True)
    return _emptiers[url]


# whether another session of the database holds an advisory lock (a worker's presence lock, a
# take gate). None does once the stores of the earlier tests are closed, but a closed session's
# locks go when its backend has ended, after close() returned: 4.6 ms later at the median and up
# to 24 ms (300 closes at load 12). A store of a test's own (``own_pg_store``, an App's) that held
# w1's presence lock left it held into the next test, whose warm store's presence (its session
# open, at once) could not take w1 and offered no hand-offs (test_pg_handoff_spare's first send
# named, not handed: 1 gate of 75)
_HELD = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND pid <> pg_backend_pid());"
)


def _empty(conn: psycopg.Connection[Any]) -> bool:
    """Delete every row; whether another session holds an advisory lock (``_HELD``, in the
    same round trip)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'schema_version'"
        )
    ]
    # DELETE, not TRUNCATE: the tables hold a few rows, and TRUNCATE makes new files for each
    row = conn.execute((_HELD + "".join(f'DELETE FROM "{t}";' for t in tables)).encode()).fetchone()
    return bool(row and row[0])


def _until_released(conn: psycopg.Connection[Any]) -> None:
    """Wait until no other session of the database holds an advisory lock: those of sessions
    closed and ending. One still held after the deadline is a store a test left open."""
    deadline = time.monotonic() + 30
    while True:
        row = conn.execute(_HELD).fetchone()
        if not (row and row[0]):
            return
        assert time.monotonic() < deadline, "a session of an earlier test still holds locks"
        time.sleep(0.002)  # real time: a poll of the server's locks, under the deadline


@contextmanager
def private_cluster(*, durable: bool = True) -> Iterator[Cluster]:
    """A cluster of the calling test's own, which it may stop and restart (the session's cluster
    is shared by every test of the worker): durable (``fsync=on``) unless asked otherwise, in a
    fresh folder under the system's temporary folder (PostgreSQL's user must reach it), stopped
    and removed at the end. Missing binaries skip the test, or fail it under ``CI=true``."""
    folder = Path(tempfile.mkdtemp(prefix="stepline-pg-own-"))
    try:
        try:
            found = start_cluster(folder, durable=durable)
        except NoPostgres as exc:
            _missing(str(exc))
        try:
            yield found
        finally:
            stop_cluster(found)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def migrated_database(found: Cluster, name: str = "stepline") -> str:
    """A new database ``name`` in ``found`` with Stepline's schema; returns its URL."""
    url = create_database(found, name)
    store = PostgresStore(url)
    try:
        store.migrate()
    finally:
        store.close()
    return url


def own_database(prefix: str) -> str:
    """A new database (its schema migrated) of this test process's, ``prefix`` and the xdist
    worker its name, made again at each call: what a plan touches there is the measured
    statement's work alone. In the process's shared database (``pg_url``, emptied by DELETE)
    it also counted what earlier tests left: a bitmap index scan counts the index entries of
    rows they deleted, which stay while any session of that database holds an old snapshot
    (each earlier lease of the same run id added one: 2 to 21 rows over 20 leases, held so),
    and the tables' sizes steer the generic plan (a gate counted 37 rows where the test's own
    database counts 2)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER") or f"main{os.getpid()}"
    return migrated_database(cluster(), f"{prefix}_{worker}")


def rows_touched(node: dict[str, Any]) -> Iterator[int]:
    """Rows each node of an EXPLAIN (ANALYZE, FORMAT JSON) plan touched: returned and removed
    by its filters, over all its loops."""
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    yield (int(node["Actual Rows"]) + int(removed)) * int(node["Actual Loops"])
    for child in node.get("Plans", ()):
        yield from rows_touched(child)


def end_other_sessions(url: str) -> None:
    """End every other session of ``url``'s database and wait until they are gone.
    ``pg_terminate_backend`` only signals a session: one not scheduled yet ends later, when it
    wakes, possibly in the next test of the process, whose pooled connection (the warm stores'
    pools, checked idle before each test: ``_replace_broken``) then dies under a commit, whose
    outcome is unknown (``StoreUnavailable``: the pass ends, and its step bodies since its last
    commit run again, as after a crash)."""
    with psycopg.connect(url, autocommit=True) as admin:
        ended = [
            r[0]
            for r in admin.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (ended,))
        deadline = time.monotonic() + 30
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (ended,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the sessions did not end"
            time.sleep(0.01)  # real time: a poll of the server's sessions, under the deadline


def clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This machine's clock ``seconds`` ahead of the server's, as the PostgreSQL store reads it
    (its module's ``time``): its skew measured, not mocked."""
    import stepline.store.postgres.store as store_module

    class Ahead:
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        def time(self) -> float:
            return time.time() + seconds

    monkeypatch.setattr(store_module, "time", Ahead())


def lock_waiters(url: str, kind: str | None = None) -> int:
    """How many sessions of ``url``'s database wait for a lock now (of ``kind``: ``advisory``,
    ``tuple``... when given)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = coalesce(%s, wait_event)",
            (kind,),
        ).fetchone()
    return int(row[0]) if row else 0
