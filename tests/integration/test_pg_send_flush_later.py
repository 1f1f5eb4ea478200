"""An in-process send on PostgreSQL whose transaction leased its new runs by name, committed on
the event loop, commits without waiting for its WAL's flush and waits for it after
(``FlushesLater``): the worker starts the runs' passes at the commit's reply, a disk flush
sooner, and the sender is acknowledged only once the flush is done (``FLUSHED``, on another
connection: the loop's own is free for the pass's first commit). A flush that fails leaves
the send's outcome unknown to the sender (``StoreUnavailable``), while the pass it leased runs
(docs/design.md, "An in-process send's passes start before its flush")."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.errors import StoreUnavailable
from stepline.store.postgres import _database


def shop(url: str, ran: list[str]) -> App:
    app = App("shop", db=url)

    @app.function(id="fn", trigger=TriggerEvent("order/created"))
    async def fn(ctx: Context) -> None:
        async def body() -> None:
            ran.append(ctx.event.data["n"])

        await ctx.step.run("one", body)

    return app


@contextlib.asynccontextmanager
async def serving(url: str, ran: list[str]) -> AsyncIterator[tuple[App, Worker]]:
    """The shop app and its worker, asleep (no poll for a minute: every pass comes from a
    send's lease), stopped and closed after the block."""
    app = shop(url, ran)
    try:
        worker = Worker(app.engine, worker_id="w", handoffs=False, poll_interval=60.0)
        task = asyncio.create_task(worker.run())
        try:
            await worker.ready.wait()
            await until("the worker asleep", lambda: worker._named.sleeping)
            yield app, worker
        finally:
            worker.stop()
            await task
    finally:
        app.close()


def flushes_held(url: str) -> psycopg.Connection[Any]:
    """A connection in a transaction that holds ``wal_flushes`` locked: ``FLUSHED`` (its row
    there) waits until it ends."""
    conn = psycopg.connect(url)
    conn.execute("LOCK TABLE wal_flushes IN ACCESS EXCLUSIVE MODE")
    return conn


def idle(app: App) -> bool:
    writer = app.engine.writer
    return writer._flight is None and not writer._draining and writer._queue.empty()


_names = itertools.count(1)


async def early_start(
    app: App, worker: Worker, ran: list[str], url: str
) -> tuple[str, asyncio.Task[list[str]], psycopg.Connection[Any]] | None:
    """A send made while flushes are held whose step body ran before the send returned (the
    lock held, its connection given), or None: its commit waited for its flush (the writer
    was busy: committed by its thread; or no connection was idle for the flush)."""
    # a name of its own: an attempt given up may have a body still to run (not len(ran), which
    # the next attempt would reuse: two runs of one name, the test's "ran once" then failing)
    n = f"n{next(_names)}"
    store: Any = app.engine.store
    store.load_run("none")  # a read: the read pool has an idle connection for the flush
    conn = flushes_held(url)
    try:
        await until("the writer idle", lambda: worker._named.sleeping and idle(app))
        sending = asyncio.create_task(app.send_async(Event("order/created", {"n": n})))
        with contextlib.suppress(AssertionError):  # (its flush waited for with its commit)
            await until("the body ran, or the send returned", lambda: n in ran, 2.0)
        if n not in ran or sending.done():
            conn.close()
            await sending
            return None
    except BaseException:
        conn.close()
        raise
    return n, sending, conn


async def test_the_first_body_runs_before_the_sends_flush_and_the_send_returns_after_it(
    pg_url: str,
) -> None:
    ran: list[str] = []
    async with serving(pg_url, ran) as (app, worker):
        await app.send_async(Event("order/created", {"n": "warm"}))
        await until("the first run", lambda: ran == ["warm"])
        for _ in range(8):  # the writer may have been busy (its thread commits then)
            found = await early_start(app, worker, ran, pg_url)
            if found is not None:
                break
        assert found is not None, "no send's pass started before its flush"
        _, sending, conn = found
        await asyncio.sleep(0.05)  # real time: the send would have returned by now
        assert not sending.done(), "the send was acknowledged before its flush"
        conn.close()  # the flush goes on
        [event_id] = await sending
        [run] = await app.runs(event_id=event_id)
        assert (await app.wait_for_run(run.run_id, timeout=10)).status == "COMPLETED"
        assert worker.leased_by_name == 0  # the pass came from the send's lease


async def failed_flush(app: App, worker: Worker, ran: list[str], url: str) -> str:
    """A send whose pass started before its flush, whose flush then failed (its backend
    ended): the send raised ``StoreUnavailable``; its name."""
    await app.send_async(Event("order/created", {"n": "warm"}))
    await until("the first run", lambda: ran == ["warm"])
    for _ in range(8):
        found = await early_start(app, worker, ran, url)
        if found is not None:
            break
    assert found is not None, "no send's pass started before its flush"
    n, sending, conn = found
    try:
        with psycopg.connect(url, autocommit=True) as admin:

            def waiting() -> list[int]:
                return [
                    pid
                    for (pid,) in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = "
                        "'Lock' AND query LIKE '%%wal_flushes%%' AND datname = "
                        "current_database()"  # never another test process's database
                    )
                ]

            await until("the flush waiting", lambda: bool(waiting()))
            for pid in waiting():
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable):
            await sending
    finally:
        conn.close()
    return n


async def test_a_failed_flush_leaves_the_send_unknown_and_its_pass_runs(pg_url: str) -> None:
    ran: list[str] = []
    async with serving(pg_url, ran) as (app, worker):
        n = await failed_flush(app, worker, ran, pg_url)
        assert ran.count(n) == 1  # its pass ran, once
        await until("every run completed", lambda: completed(app, ran), 10)


async def completed(app: App, ran: list[str]) -> bool:
    """Whether every run of the sends made completed (each ran its body once)."""
    runs = await app.runs(function_id="fn")
    return len(runs) == len(ran) and all(r.status == "COMPLETED" for r in runs)


async def test_a_failed_flush_still_tells_what_the_commit_did(pg_url: str) -> None:
    """The transaction committed (its rows are seen, its pass runs); only its flush is
    unknown: what follows a committed ingestion (``Engine.after_ingest``: the events counted,
    the workers woken, the live views told) is done as for one flushed. It was skipped."""
    ran: list[str] = []
    async with serving(pg_url, ran) as (app, worker):
        feed = app.engine.changes.subscribe()
        try:
            await failed_flush(app, worker, ran, pg_url)
            await until("every run completed", lambda: completed(app, ran), 10)
            runs = {r.run_id for r in await app.runs(function_id="fn")}  # the failed one too
            changes = await feed.get() if feed.pending else []
        finally:
            feed.close()
        # the runs the live views were told events started (the runs' ends send events too)
        told = {run_id for c in changes for e in c.ingested for run_id in e.run_ids}
        assert told == runs, "the live views were not told of the failed flush's send"
        assert app.engine.metrics.events_accepted == len(runs)  # the sends (a send each run)


async def test_a_flush_whose_statement_was_dropped_is_sent_again(pg_url: str) -> None:
    """``FLUSHED`` prepared on the read pool's connections (at its first execution), then
    dropped behind psycopg's back (a pooler's ``DEALLOCATE ALL``): the next sends' flushes fail
    with 26000 having done nothing, and are sent again, prepared anew; no send is refused."""
    ran: list[str] = []
    async with serving(pg_url, ran) as (app, worker):
        store: Any = app.engine.store
        for n in range(12):
            store.load_run("none")  # a read: the read pool has an idle connection
            await app.send_async(Event("order/created", {"n": str(n)}))
        await until("the runs", lambda: len(ran) == 12)
        await until("the worker asleep", lambda: worker._named.sleeping and idle(app))
        taken = []  # every idle connection of the read pool, taken: nobody else uses them
        while (conn := _database.take_idle(store._read_pool)) is not None:
            taken.append(conn)
        try:
            prepared = [
                conn
                for conn in taken
                if conn.execute(
                    "SELECT 1 FROM pg_prepared_statements WHERE statement LIKE '%wal_flushes%'"
                ).fetchall()
            ]
            assert prepared, "no connection had the flush prepared"
            for conn in taken:
                result = conn.pgconn.exec_(b"DEALLOCATE ALL")  # psycopg does not see it
                assert result.status == psycopg.pq.ExecStatus.COMMAND_OK
        finally:
            for conn in taken:
                store._read_pool.putconn(conn)
        for n in range(12, 24):
            await app.send_async(Event("order/created", {"n": str(n)}))  # none refused
        await until("the runs", lambda: len(ran) == 24)
