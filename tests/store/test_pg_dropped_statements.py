"""A statement psycopg prepared, gone from the server behind its back (a connection pooler's
``DEALLOCATE ALL`` or ``DISCARD ALL`` between transactions): its next execution on that
connection fails with 26000, having done nothing. The store makes psycopg forget the names it
prepared on that connection (they are prepared anew) and says so as ``StoreUnavailable``
(retry). Before, the error was a ``StoreError`` ("the store failed"), which stops an in-process
worker for good, and psycopg kept executing the missing name: every later use of the statement
on that connection, which the pool kept handing out, failed the same way."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import psycopg
import pytest

from stepline import App, Event, StoreUnavailable, TriggerEvent
from stepline.store.postgres import PostgresStore

DROPS = [b"DEALLOCATE ALL", b"DISCARD ALL"]
DEADLINE = 60.0  # a bound on each wait, never a sleep


def _drop(conn: psycopg.Connection[Any], drop: bytes) -> None:
    """``drop`` on ``conn`` with libpq's own call: psycopg does not see it."""
    result = conn.pgconn.exec_(drop)
    assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, result.error_message


@pytest.mark.parametrize("drop", DROPS)
def test_a_read_of_a_dropped_statement_is_unavailable_once_then_works(
    pg_url: str, drop: bytes
) -> None:
    store = PostgresStore(pg_url, max_connections=1)  # one connection a pool: every read on it
    try:
        for _ in range(6):  # psycopg prepares a statement at its fifth execution
            assert store.get_run("nope") is None
            assert store.load_run("nope") is None  # the read pool's
        with store._pool.connection() as conn:
            _drop(conn, drop)
        with store._read_pool.connection() as conn:
            _drop(conn, drop)
        with pytest.raises(StoreUnavailable, match="does not exist"):
            store.get_run("nope")
        assert store.get_run("nope") is None  # prepared anew
        with pytest.raises(StoreUnavailable, match="does not exist"):
            store.load_run("nope")
        assert store.load_run("nope") is None
    finally:
        store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("drop", DROPS)
async def test_sends_and_passes_go_on_after_their_statements_were_dropped(
    pg_url: str, drop: bytes
) -> None:
    """Every statement the store prepared dropped on each of its connections (idle ones and
    the event loop's kept one): a send may be refused as unavailable (retried: accepted), the
    in-process worker goes on (it stopped on the store's error), every run completes."""
    app = App("dropped", db=pg_url)

    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Any) -> int:
        await ctx.step.run("a", lambda: 1)
        return int(await ctx.step.run("b", lambda: 2))

    try:
        async with app.worker(concurrency=10) as worker:
            for _ in range(12):  # psycopg prepares the statements used at least five times
                await app.send_async(Event("go"))
            await _completed(app, 12)
            store: Any = app.engine.store
            conns = [*store._pool._pool, *store._read_pool._pool]  # the idle ones
            kept = store._loop_conns._kept
            conns += [] if kept is None else [kept.conn]
            for conn in conns:
                _drop(conn, drop)
            refused = 0
            for i in range(30):
                for _ in range(5):
                    try:
                        await app.send_async(Event("go", id=f"after-{i}"))
                        break
                    except StoreUnavailable:
                        refused += 1
                else:
                    raise AssertionError(f"send {i} refused five times")
            await _completed(app, 42)
            assert worker.failed is None, worker.failed
            assert refused <= len(conns) * 3
    finally:
        app.close()


async def _completed(app: App, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        runs = await app.runs(limit=1000, with_steps=False)
        statuses = collections.Counter(r.status for r in runs)
        if statuses == {"COMPLETED": count}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not completed: {statuses}")
        await asyncio.sleep(0.05)  # real time: the poll interval; the deadline bounds it
