"""``BatchWriter.write_now(job)``: on a store that can (``InlineCommits``: SQLite), a job given by
an event loop with nothing else ready, while the writer is idle, is made at once in a
transaction of its own on that loop's thread (no hop to the writer thread and back: an idle
worker's event -> first step); otherwise nothing is done and the caller submits it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import sqlitetest
from stepline.engine.writer import BatchWriter
from stepline.store import MemoryStore, SQLiteStore
from stepline.store.interface import StoreTx


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    opened = SQLiteStore(sqlitetest.fresh_database(tmp_path / "s.db"), synchronous="NORMAL")
    opened.migrate()
    return opened


def _pause(name: str, ran: list[str]) -> Callable[[StoreTx], str]:
    def job(tx: StoreTx) -> str:
        ran.append(name)
        tx.set_paused(name, True)
        return name

    return job


async def test_a_job_of_an_idle_loop_is_committed_by_the_loop_s_thread(store: SQLiteStore) -> None:
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)  # whatever the test's start scheduled has run
        threads: list[int] = []

        def job(tx: StoreTx) -> str:
            threads.append(threading.get_ident())
            tx.set_paused("fn", True)
            return "done"

        assert writer.write_now(job) == (True, "done")
        assert threads == [threading.get_ident()]
        assert writer.inline_commits == writer.transactions == 1
        assert store.paused_functions() == {"fn"}  # committed: read by another connection
    finally:
        writer.close()
        store.close()


async def test_a_job_s_error_is_its_outcome(store: SQLiteStore) -> None:
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)

        def job(tx: StoreTx) -> None:
            raise ValueError("refused")

        ok, error = writer.write_now(job) or (None, None)
        assert ok is False and isinstance(error, ValueError)
    finally:
        writer.close()
        store.close()


async def test_nothing_is_made_now_when_the_loop_has_callbacks_ready(store: SQLiteStore) -> None:
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)
        ran: list[str] = []
        asyncio.get_running_loop().call_soon(lambda: None)  # a job it queued could join a kick
        assert writer.write_now(_pause("fn", ran)) is None
        assert ran == [] and writer.transactions == 0
    finally:
        writer.close()
        store.close()


async def test_nothing_is_made_now_while_another_connection_holds_the_write_lock(
    store: SQLiteStore,
) -> None:
    writer = BatchWriter(store)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        await asyncio.sleep(0)
        ran: list[str] = []
        other.execute("BEGIN IMMEDIATE")  # another process's transaction, say
        assert writer.write_now(_pause("fn", ran)) is None
        assert ran == [] and writer.transactions == 0  # not waited for: nothing was done
        other.execute("ROLLBACK")
        assert writer.write_now(_pause("fn", ran)) == (True, "fn")
    finally:
        other.close()
        writer.close()
        store.close()


async def test_jobs_queued_meanwhile_wait_for_it_then_the_thread_makes_them(
    store: SQLiteStore,
) -> None:
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)
        ran: list[str] = []
        sender = threading.Thread(target=lambda: writer.submit_sync(_pause("queued", ran)))

        def job(tx: StoreTx) -> str:
            sender.start()  # a thread's job, queued while this transaction is open
            while writer._queue.empty():
                pass
            ran.append("now")
            tx.set_paused("now", True)
            return "now"

        assert writer.write_now(job) == (True, "now")
        sender.join(30)
        assert not sender.is_alive()
        assert ran == ["now", "queued"]  # made after it, by the writer's thread
        assert writer.transactions == 2 and writer.inline_commits == 1
        assert store.paused_functions() == {"now", "queued"}
    finally:
        writer.close()
        store.close()


async def test_a_store_that_cannot_is_never_given_a_job_now() -> None:
    writer = BatchWriter(MemoryStore())
    try:
        await asyncio.sleep(0)
        ran: list[str] = []
        assert writer.write_now(_pause("fn", ran)) is None
        assert ran == []
    finally:
        writer.close()
