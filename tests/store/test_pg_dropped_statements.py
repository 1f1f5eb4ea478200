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
from stepline.store.interface import Replay
from stepline.store.postgres import PostgresStore, _pipeline

from .builders import SERVED, T0, cel_matches, trigger

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
            conns = await _drop_everywhere(store, drop)
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


async def _drop_everywhere(store: Any, drop: bytes) -> list[psycopg.Connection[Any]]:
    """``drop`` on every idle connection of ``store``'s pools and on the loop's kept one;
    each taken for it alone: an idle connection out of its pool (the writer thread or a
    heartbeat may take one meanwhile: it is not handed out while dropped), the kept one once
    no commit holds it (a commit's later flush may still be in flight after the runs
    completed: a libpq call in the middle of its pipeline fails)."""
    conns = []
    for pool in (store._pool, store._read_pool):
        taken = [pool.getconn() for _ in range(len(pool._pool))]
        try:
            for conn in taken:
                _drop(conn, drop)
        finally:
            for conn in taken:
                pool.putconn(conn)
        conns += taken
    kept = store._loop_conns._kept
    if kept is not None:
        deadline = time.monotonic() + DEADLINE
        while kept.busy:  # the loop's own: no commit can take it between this and the drop
            assert time.monotonic() < deadline, "the kept connection stayed busy"
            await asyncio.sleep(0.01)  # real time: its commit's reply; the deadline bounds it
        _drop(kept.conn, drop)
        conns.append(kept.conn)
    return conns


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


def _lease_in(store: PostgresStore, now: float) -> list[Any]:
    """An optimistic transaction leasing due runs (its statements psycopg's to prepare)."""
    with store.optimistic_transaction() as tx:
        return tx.lease_due("w1", now, 10, 30.0, SERVED)


def test_a_dropped_statement_whose_error_a_job_caught_is_forgotten_with_the_others(
    pg_url: str,
) -> None:
    """A job of an optimistic transaction that catches the error of a dropped statement (as
    the owed announcements' job catches any error of its savepoint) and goes on: the
    transaction is spoiled (``Replay``: made again carefully), and psycopg forgets every name
    it prepared on the connection then, as when the error ends the transaction. Before, only
    the failed name was forgotten there: each other statement dropped failed once more at its
    next use, each failure a transaction made again (the ingest below was refused)."""
    store = PostgresStore(pg_url, max_connections=1)  # one read connection: every transaction
    try:
        for i in range(6):  # psycopg prepares a statement at its fifth execution
            _lease_in(store, T0 + i)
            ingest_optimistic(store, f"e{i}", T0 + i)
        with store._read_pool.connection() as conn:
            _drop(conn, b"DEALLOCATE ALL")
        caught: list[str | None] = []
        with pytest.raises(Replay):
            _caught_in_a_job(store, caught)
        assert caught == ["26000"]
        ingest_optimistic(store, "e-after", T0 + 11)  # prepared anew: accepted at once
        assert _lease_in(store, T0 + 12) != []
    finally:
        store.close()


def _caught_in_a_job(store: PostgresStore, caught: list[str | None]) -> None:
    with store.optimistic_transaction() as tx:
        try:
            tx.lease_due("w1", T0 + 10, 10, 30.0, SERVED)
        except psycopg.Error as exc:  # the job goes on
            caught.append(exc.sqlstate)


def ingest_optimistic(store: PostgresStore, internal_id: str, now: float) -> None:
    with store.optimistic_transaction() as tx:
        tx.ingest([trigger(f"r-{internal_id}", event_id=internal_id)], now, cel_matches)


@pytest.mark.parametrize("on_loop", [False, True])
async def test_a_round_trip_that_met_a_dropped_statement_forgets_the_connections_names(
    pg_url: str, on_loop: bool
) -> None:
    """Any round trip of the store's own pipeline (``_pipeline.send_all`` and its loop form:
    the leases by name alone, the deferred flush, reads, transactions) that meets a statement
    dropped behind psycopg's back forgets the connection's prepared names, whoever catches its
    error: the connection's other statements, dropped too, are prepared anew at their next use
    instead of each failing once more (a lease by name alone, refused as ``Replay``, left the
    loop's connection so)."""

    async def send(conn: psycopg.Connection[Any], query: str) -> Any:
        statements = [(query, (1,))]
        if on_loop:
            return (await _pipeline.send_all_async(conn, statements))[0]
        return _pipeline.send_all(conn, statements)[0]

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for _ in range(6):  # psycopg prepares a statement at its fifth execution
            await send(conn, "SELECT 1 + %s")
            await send(conn, "SELECT 2 + %s")
        _drop(conn, b"DEALLOCATE ALL")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            await send(conn, "SELECT 1 + %s")
        assert await send(conn, "SELECT 2 + %s") == [(3,)]  # prepared anew
        assert await send(conn, "SELECT 1 + %s") == [(2,)]
