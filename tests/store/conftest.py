"""The ``store`` fixture: each contract test runs on the reference memory store, on SQLite and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pgtest
import sqlitetest
from stepline.store import MemoryStore, SQLiteStore, Store
from stepline.store.postgres import _alone, _prepared
from stepline.store.postgres import store as postgres_store

if TYPE_CHECKING:
    from stepline.store.postgres import PostgresStore

BACKENDS = ["memory", "sqlite", "postgres"]


def open_backend(kind: str, path: Path, pg_url: str | None = None) -> Store:
    """A migrated, empty store of ``kind`` ("memory", "sqlite" in the file ``path``, or
    "postgres" in the emptied database ``pg_url``)."""
    store: Store
    if kind == "memory":
        store = MemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(sqlitetest.fresh_database(path))
    else:
        assert pg_url is not None
        store = pgtest.warm_store(pg_url)
    store.migrate()
    return store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    opened = open_backend(request.param, tmp_path / "s.db", url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A fresh SQLite store (for backend-specific tests)."""
    opened = SQLiteStore(sqlitetest.fresh_database(tmp_path / "s.db"))
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    """A migrated, empty PostgreSQL store (the PostgreSQL-only tests): a ``pgtest.warm_store``,
    whose connection pools are this process's, kept from one test to the next (a store of its
    own opened its pools and migrated on new sessions: ~60 ms of CPU a test, client and server).
    A test that counts, takes or ends the pools' connections asks for ``own_pg_store``."""
    store = pgtest.warm_store(pg_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def own_pg_store(pg_url: str) -> Iterator[PostgresStore]:
    """A migrated, empty PostgreSQL store with connection pools of its own, new and empty (the
    tests that count the idle connections, or end every session and count what is made again)."""
    from stepline.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements psycopg executes from now on (a raw cursor's too: a subclass), and those
    sent by ``_pipeline.send_all``; not those of a pool's own threads (psycopg_pool's
    ``NAME-worker-N``), which set up a new connection (``SET jit = off``, its prepared
    statements) whenever a pool grows: a test's first reads grow the process's pools, so which
    test saw them depended on the order the tests ran in."""
    import threading

    import psycopg

    found: list[str] = []
    execute = psycopg.Cursor.execute

    def recording(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if "-worker-" not in threading.current_thread().name:
            found.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", recording)
    from stepline.store.postgres import _pipeline

    send_all = _pipeline.send_all

    def recording_all(conn: Any, statements: Any) -> Any:  # a round trip of our own pipeline
        found.extend(str(query) for query, _ in statements)
        return send_all(conn, statements)

    monkeypatch.setattr(_pipeline, "send_all", recording_all)
    return found


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Each round trip ``_pipeline.send_all`` makes from now on: its statements' texts."""
    from stepline.store.postgres import _pipeline

    found: list[list[str]] = []
    send_all = _pipeline.send_all

    def recording(conn: Any, statements: Any) -> Any:
        found.append([query for query, _ in statements])
        return send_all(conn, statements)

    monkeypatch.setattr(_pipeline, "send_all", recording)
    return found


@pytest.fixture
def prepared_sends(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """(PostgreSQL) each lone step commit sent prepared: whether it was (False: the usual lane
    took it). One that ``commit_kept`` did not send goes to ``commit_prepared``: counted there."""
    sends: list[bool] = []
    commit = _prepared.commit_prepared
    kept = _prepared.commit_kept

    async def recorded(*args: Any) -> bool:
        sent = await commit(*args)
        sends.append(sent)
        return sent

    async def recorded_kept(*args: Any) -> bool:
        sent = await kept(*args)
        if sent:
            sends.append(sent)
        return sent

    monkeypatch.setattr(_alone, "commit_prepared", recorded)
    monkeypatch.setattr(postgres_store, "commit_kept", recorded_kept)
    return sends
