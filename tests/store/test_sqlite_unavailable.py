"""SQLite's transient errors (disk full, I/O errors, locked past the busy timeout) become
``StoreUnavailable``; a failed transaction never leaves a connection unusable nor a verb running
outside a transaction (issue 6 item 7)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.store.builders import T0, cel_matches

from stepline import StoreError, StoreUnavailable
from stepline.engine.writer import BatchWriter
from stepline.store import SQLiteStore
from stepline.store.interface import StoreTx
from stepline.store.records import EventIngest, EventRecord


def sqlite_error(message: str, code: int, name: str) -> sqlite3.OperationalError:
    """An error as the sqlite3 module raises it (with SQLite's result code)."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    error.sqlite_errorname = name  # type: ignore[attr-defined]
    return error


def test_transient_sqlite_errors_read_as_store_unavailable(tmp_path: Path) -> None:
    # issue 6 item 7: the backend maps its own errors
    store = SQLiteStore(tmp_path / "s.db")
    for message, code, name in [
        ("database or disk is full", 13, "SQLITE_FULL"),
        ("disk I/O error", 10 | (4 << 8), "SQLITE_IOERR_SHORT_READ"),
        ("database is locked", 5, "SQLITE_BUSY"),
    ]:
        found = store.store_error(sqlite_error(message, code, name))
        assert isinstance(found, StoreUnavailable)
        assert message in str(found) and str(tmp_path / "s.db") in str(found)
        assert name in str(found)  # the extended code tells which lock or which I/O failed
    # issue 6 review item 1: any other SQLite error is a StoreError naming the file, not None
    found = store.store_error(
        sqlite_error("attempt to write a readonly database", 8, "SQLITE_READONLY")
    )
    assert type(found) is StoreError and str(tmp_path / "s.db") in str(found)
    assert (
        type(store.store_error(sqlite_error("no such table: x", 1, "SQLITE_ERROR"))) is StoreError
    )
    assert store.store_error(ValueError("not ours")) is None
    store.close()


class _CommitFails:
    """A connection whose next COMMIT fails (the transaction stays open, as on SQLITE_BUSY)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail_commit = True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.fail_commit:
            self.fail_commit = False
            raise sqlite_error("database is locked", 5, "SQLITE_BUSY")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_failed_commit_leaves_the_connection_usable(tmp_path: Path) -> None:
    # issue 6 item 7: COMMIT raising left the connection inside the transaction, so every later
    # BEGIN on the writer thread failed ("cannot start a transaction within a transaction")
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    conn = store._conn()
    store._local.conn = _CommitFails(conn)
    with pytest.raises(StoreUnavailable, match="locked"), store.transaction() as tx:
        tx.set_paused("lost", True)
    with store.transaction() as tx:
        tx.set_paused("kept", True)
    assert store.paused_functions() == {"kept"}
    store.close()


def _event(n: int, size: int) -> EventIngest:
    record = EventRecord(f"e{n}", "big", {"blob": "x" * size}, {}, None, T0)
    return EventIngest(record)


async def test_a_disk_full_in_one_job_fails_its_whole_batch(tmp_path: Path) -> None:
    # issue 6 item 7: a genuine SQLITE_FULL (max_page_count) rolls the whole transaction back in
    # SQLite; the jobs after it must not run outside a transaction, none of the batch may be
    # acknowledged, each caller gets StoreUnavailable, and the writer works once space is back
    store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
    store.migrate()
    writer = BatchWriter(store)
    entered, gate = threading.Event(), threading.Event()

    def hold(tx: StoreTx) -> None:  # keeps the writer busy while the batch under test queues
        entered.set()
        gate.wait(10)

    def limit_pages(tx: StoreTx) -> None:
        conn = store._conn()  # the writer thread's connection
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await writer.write(limit_pages)
    held = asyncio.ensure_future(writer.write(hold))
    assert await asyncio.to_thread(entered.wait, 10)
    small = asyncio.ensure_future(writer.write(lambda tx: tx.set_paused("before", True)))
    big = asyncio.ensure_future(
        writer.write(lambda tx: tx.ingest([_event(1, 200_000)], T0, cel_matches))
    )
    after = asyncio.ensure_future(writer.write(lambda tx: tx.set_paused("after", True)))
    await asyncio.sleep(0)  # the three are queued (each task ran up to its await)
    gate.set()
    await held
    outcomes = await asyncio.gather(small, big, after, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert "database or disk is full" in str(outcomes[1])
    assert store.paused_functions() == set()

    await writer.write(lambda tx: store._conn().execute("PRAGMA max_page_count = 1073741823"))
    await writer.write(lambda tx: tx.ingest([_event(2, 200_000)], T0, cel_matches))
    await writer.write(lambda tx: tx.set_paused("later", True))
    assert store.paused_functions() == {"later"}
    assert [e.internal_id for e in store.get_events(["e1", "e2"])] == ["e2"]
    writer.close()
    store.close()


def test_a_store_opened_while_another_connection_creates_the_file_waits_for_it(
    tmp_path: Path,
) -> None:
    # a worker and `stepline send` started together on a new file: switching the file to WAL
    # returns SQLITE_BUSY at once, without SQLite's busy handler, while another connection holds
    # a write lock on it (SQLite's deadlock avoidance; the CLI failed with "database is locked"
    # in a suite run, and 3 of 60 trials of 4 processes opening a new file failed)
    path = tmp_path / "new.db"
    creator = sqlite3.connect(path, isolation_level=None)
    creator.execute("BEGIN IMMEDIATE")  # the other process, mid-creation
    creator.execute("CREATE TABLE other_process (x)")
    opened = threading.Event()
    outcome: list[BaseException | None] = []

    def open_store() -> None:
        store = SQLiteStore(path, busy_timeout=30.0)
        opened.set()
        try:
            store.migrate()
            with store.transaction() as tx:
                tx.set_paused("f", True)
            outcome.append(None)
        except BaseException as exc:  # reported by the assertion below
            outcome.append(exc)
        finally:
            store.close()

    thread = threading.Thread(target=open_store)
    thread.start()
    opened.wait(10)
    # the store is kept waiting while the lock is held: it has not failed meanwhile
    for _ in range(20):
        if outcome:
            break
        thread.join(0.01)
    assert not outcome, f"the store gave up while the lock was held: {outcome}"
    creator.execute("ROLLBACK")
    creator.close()
    thread.join(30)
    assert outcome == [None]


def test_a_connection_whose_set_up_fails_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a connection the store opens and cannot set up (the disk full as it enters WAL mode) is
    # closed at once, and the next use opens one anew: none is left to the garbage collector
    # (a worker retrying through a full disk opened one a retry)
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    store.close()
    made: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def connecting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        made.append(conn)
        return conn

    def full(conn: sqlite3.Connection, timeout: float) -> None:
        raise sqlite_error("database or disk is full", 13, "SQLITE_FULL")

    monkeypatch.setattr(sqlite3, "connect", connecting)
    monkeypatch.setattr("stepline.store.sqlite._database.use_wal", full)
    with pytest.raises(StoreUnavailable):
        store.get_run("r1")
    [refused] = made
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        refused.execute("SELECT 1")
    monkeypatch.undo()
    assert store.get_run("r1") is None  # made anew
    store.close()
