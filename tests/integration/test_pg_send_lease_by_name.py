"""An in-process send on PostgreSQL leases the runs it starts for its worker by name
(``LeasesNewRuns``): ``LEASE_NAMED`` queued in the send's own transaction and read with its
commit, so the send is one round trip, which the writer may commit on the event loop (no hop
to its thread and back). Before, the send's lease was the fair order's (``lease_due``): a
read of the candidates before the commit, so two round trips, made by the writer thread. A
run the lease by name does not take (something of its function ahead of it) is the worker's
to look for: it is woken at once, and its lease attempt takes both in the fair order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.store.postgres import PostgresStore, _pipeline
from stepline.store.postgres import _lease_queries as lq
from stepline.store.postgres import queries as q
from stepline.store.postgres._leases import LEASE_NEW
from stepline.store.records import EventIngest, Lease, NewRun


def recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, list[str]]]:
    """The texts of every round trip sent from now on, and whether it was awaited on a loop."""
    trips: list[tuple[bool, list[str]]] = []
    send_all, send_all_async = _pipeline.send_all, _pipeline.send_all_async

    def sync(conn: Any, statements: Sequence[tuple[str, Any]]) -> Any:
        trips.append((False, [query for query, _ in statements]))
        return send_all(conn, statements)

    async def on_loop(conn: Any, statements: Sequence[tuple[str, Any]], watch: Any = None) -> Any:
        trips.append((True, [query for query, _ in statements]))
        return await send_all_async(conn, statements, watch)

    monkeypatch.setattr(_pipeline, "send_all", sync)
    monkeypatch.setattr(_pipeline, "send_all_async", on_loop)
    return trips


def shop(url: str, ran: list[str], held: dict[str, asyncio.Event] | None = None) -> App:
    """``held``: the runs (by ``n``) whose function waits for that event before it ends."""
    app = App("shop", db=url)

    @app.function(id="fn", trigger=TriggerEvent("order/created"))
    async def fn(ctx: Context) -> None:
        n = ctx.event.data["n"]
        ran.append(n)
        if held is not None and n in held:
            await held[n].wait()

    return app


async def started(app: App, **options: Any) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(app.engine, worker_id="w", **options)
    task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    await until("the worker asleep", lambda: worker._named.sleeping)
    return worker, task


async def test_an_in_process_send_leases_its_run_by_name_in_one_round_trip_on_the_loop(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    # the run's pass ends only once the send is checked: ended while the send waits for its
    # flush (it starts in the turn its function runs), it wakes the worker, whose lease
    # attempt reads, and is refused on the loop with the pass's commit batched beside it
    hold = asyncio.Event()
    app = shop(pg_url, ran, {"one": hold})
    try:
        worker, task = await started(app, handoffs=False)
        try:
            await app.send_async(Event("order/created", {"n": "warm"}))  # the catalog known
            await until("the first run", lambda: ran == ["warm"])
            # asleep again after its pass ended (which woke it to look for work: a lease
            # attempt made while the send below is measured)
            await until(
                "the worker asleep after the first pass",
                lambda: (
                    worker.passes == 1
                    and not worker.active
                    and not worker._wake.is_set()
                    and worker._named.sleeping
                ),
            )
            trips = recording(monkeypatch)
            refusals = app.engine.writer.loop_refusals
            [event_id] = await app.send_async(Event("order/created", {"n": "one"}))
            # one round trip (on the loop, unless the writer was busy with another commit:
            # then its thread's), with the lease, and no read of candidates before it: the
            # loop never refuses it
            [send] = [t for _, t in trips if q.INSERT_EVENT in t]
            assert LEASE_NEW in send  # (LEASE_NAMED's rules for runs it made itself)
            # generic plans asked for once (the ingest's, kept for the lease), put back once
            # at most (only for another job's statements after the send's in its transaction:
            # its own settings end with it)
            assert send.count(lq.GENERIC_PLANS) == 1 and send.count(lq.DEFAULT_PLANS) <= 1
            assert not [t for _, trip in trips for t in trip if t == lq.LIVE_LEASES]
            assert app.engine.writer.loop_refusals == refusals
            # its pass started from the lease the send took: no lease attempt of the worker's
            assert worker.leased_by_name == 0
            hold.set()
            await until("the run", lambda: ran == ["warm", "one"])
            [run] = await app.runs(event_id=event_id)
            await until("completed", lambda: worker.passes == 2 and not worker.active)
            assert (await app.wait_for_run(run.run_id, timeout=10)).status == "COMPLETED"
        finally:
            hold.set()  # (an assertion failed: the pass ends, the worker stops)
            worker.stop()
            await task
    finally:
        app.close()


async def test_a_run_the_lease_by_name_leaves_is_looked_for_by_the_worker_at_once(
    pg_url: str,
) -> None:
    """A due run of the function that nobody was told of (its notification lost) is ahead of
    the new run: the send's lease by name does not take the new run, and the worker, woken by
    the send, leases both (its poll is a minute away)."""
    ran: list[str] = []
    app = shop(pg_url, ran)
    try:
        worker, task = await started(app, handoffs=False, poll_interval=60.0)
        try:
            now = app.engine.clock.now() - 1.0
            with cast(PostgresStore, app.engine.store).transaction() as tx:
                record = app.engine.event_record(Event("order/created", {"n": "ahead"}), now)
                run = NewRun("0-ahead", "fn", (record.internal_id,), app_id="shop")
                silent = EventIngest(record, (run,))
                tx.ingest([silent], now, app.engine.wait_matches)
                tx.new_runs.clear()  # type: ignore[attr-defined]  # told to nobody
                tx.made_work = False  # type: ignore[attr-defined]
            adopted: list[list[str]] = []
            adopt = worker.adopt

            def adopting(leases: Sequence[Lease]) -> None:
                adopted.append([lease.run_id for lease in leases])
                adopt(leases)

            worker.adopt = adopting  # type: ignore[method-assign]
            await app.send_async(Event("order/created", {"n": "new"}))
            assert adopted == [[]], "the send's lease took a run with another ahead of it"
            await until("both runs", lambda: sorted(ran) == ["ahead", "new"])
        finally:
            worker.stop()
            await task
    finally:
        app.close()


async def test_a_sends_commit_begins_in_the_send_when_the_loop_has_nothing_else_ready(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send's job is submitted ``alone`` (its group cannot grow before a kick would run
    it): on an idle loop its commit is written in the send's own call, not a loop turn later
    (the round trip begins in the sender's task, not in the writer's kick)."""
    ran: list[str] = []
    app = shop(pg_url, ran)
    try:
        worker, task = await started(app, handoffs=False, poll_interval=60.0)
        try:
            await app.send_async(Event("order/created", {"n": "warm"}))
            await until("the first run", lambda: ran == ["warm"])
            writer = app.engine.writer

            def idle() -> bool:
                return writer._flight is None and not writer._draining and writer._queue.empty()

            begun: list[bool] = []
            send_all_async = _pipeline.send_all_async

            async def on_loop(conn: Any, statements: Any, watch: Any = None) -> Any:
                begun.append(asyncio.current_task() is sender)  # the kick's is no task's
                return await send_all_async(conn, statements, watch)

            monkeypatch.setattr(_pipeline, "send_all_async", on_loop)
            sender = asyncio.current_task()
            for n in range(8):  # the loop may have a callback ready (another task's wake-up)
                await until("the writer idle", lambda: worker._named.sleeping and idle())
                begun.clear()
                await app.send_async(Event("order/created", {"n": str(n)}))
                if begun and begun[0]:
                    break
            assert begun and begun[0], "no send began its commit in its own call"
            await until("the runs", lambda: len(ran) == n + 2)
        finally:
            worker.stop()
            await task
    finally:
        app.close()
