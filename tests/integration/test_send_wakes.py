"""``send`` hands the runs it starts to the in-process worker in its own transaction (issue 6,
event → first step): that worker is then not woken for a lease attempt that would find nothing
new and only compete with those runs' passes for the writer. It is woken when the event did
more than start runs it was handed (a wait resumed, a run it could not take); on every store. On
SQLite and PostgreSQL those runs are handed loaded, read in that transaction too
(``LoadsLeased``): their first pass starts with no read of its own (``load_run`` on a reader
thread: a hop there and back, a read transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine._wake import WakeSignal
from stepline.engine.worker import Worker
from stepline.store.records import RunState

# the stores whose lease attempts read the runs they lease (``Lease.loaded``; the memory store's
# passes read theirs, a look-up)
LOADING = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


class Counted:
    """Counts the ``set()`` calls of a worker's own wake-up signal (the loop waits on it)."""

    def __init__(self, signal: WakeSignal) -> None:
        self.sets = 0
        original = signal.set

        def counting() -> None:
            self.sets += 1
            original()

        signal.set = counting  # type: ignore[method-assign]


async def test_a_worker_handed_every_new_run_is_not_woken_for_nothing(app_db: str) -> None:
    app = App("wakes", db=app_db)
    # the quick run's step waits for it: its pass ends after the assertion on the send's
    # wake-ups, not during the send. A send that hands its runs over starts their passes at
    # its commit, then (PostgreSQL) waits for its WAL's flush before it returns: under load
    # the whole pass ran meanwhile, and its end woke the worker (a slot free), counted as the
    # send's (19 failures in 300 at load 8, the gate's of 17:59)
    held = asyncio.Event()

    async def one() -> int:
        await held.wait()
        return 1

    @app.function(id="quick", trigger=TriggerEvent("quick/go"))
    async def quick(ctx: Context) -> Any:
        return await ctx.step.run("one", one)

    @app.function(id="waiter", trigger=TriggerEvent("wait/go"))
    async def waiter(ctx: Context) -> Any:
        return await ctx.step.wait_for_event("paid", event="wait/paid", timeout="1h")

    try:
        # no periodic poll: a lease attempt reserves the worker's free slots while it is in
        # flight, and a send made meanwhile could hand it nothing (so it woke the worker, as it
        # should: 1 wake-up, the flake of 12:50 on main; every 0.25 s, the default poll)
        async with app.worker(poll_interval=None) as worker:
            await worker.ready.wait()
            [started] = await app.send_async(Event(name="wait/go"))
            await until("the run waiting", lambda: _status(app, started, "WAITING"))
            # the notification of its pass's commit (a run due later: plain) may be read late,
            # during the send, and wake the worker (2 failures in 300 at load 8 once the step
            # was held): let the worker hear it first
            await _heard_so_far(app_db, worker)
            # a pass that ends wakes its worker (a slot is free), whose lease attempt then
            # reserves its slots: let both end, the worker asleep
            await until("the worker to sleep", lambda: _asleep(worker))
            counted = Counted(worker._wake)

            [quick_event] = await app.send_async(Event(name="quick/go"))
            woken = counted.sets
            held.set()  # before the assertion: a worker that stops waits for its passes
            assert woken == 0  # its run was handed over: nothing else to look for
            await until("the quick run", lambda: _status(app, quick_event, "COMPLETED"))
            # its pass's end woke the worker (a slot was free), which looked for work
            await until("the worker to sleep again", lambda: _asleep(worker))
            counted.sets = 0

            await app.send_async(Event(name="wait/paid"))
            assert counted.sets == 1  # a wait resumed: that run is due, look for it
    finally:
        app.close()


@LOADING
async def test_a_run_an_in_process_send_starts_is_not_read_again_by_its_pass(
    app_db: str,
) -> None:
    app = App("loaded", db=app_db)

    @app.function(id="quick", trigger=TriggerEvent("quick/go"))
    async def quick(ctx: Context) -> Any:
        return await ctx.step.run("one", lambda: ctx.event.data["n"] + 1)

    reads = _count_loads(app)
    try:
        async with app.worker(poll_interval=None) as worker:
            await worker.ready.wait()
            # its first lease attempt reserves its free slots while in flight: a send made
            # meanwhile hands it nothing (that attempt leases the run, and the pass reads it)
            await until("the worker to sleep", lambda: _asleep(worker))
            [event_id] = await app.send_async(Event(name="quick/go", data={"n": 41}))
            [run] = await app.runs(event_id=event_id)
            ended = await app.wait_for_run(run.run_id, timeout=30)
        assert ended.status == "COMPLETED" and ended.output == 42
        assert reads == []  # before: [run.run_id], its pass's own read
    finally:
        app.close()


def _count_loads(app: App) -> list[str]:
    """The run ids ``app``'s store is asked to load (``load_run``) from now on, in order."""
    store = app.engine.store
    load_run = store.load_run
    reads: list[str] = []

    def counting(run_id: str) -> RunState | None:
        reads.append(run_id)
        return load_run(run_id)

    store.load_run = counting  # type: ignore[method-assign]
    return reads


async def _heard_so_far(db: str, worker: Worker) -> None:
    """Return once ``worker`` was woken by the notifications (PostgreSQL) of every commit made
    so far: a notification of ours, sent now, reaches its listener after them (they are
    delivered in commit order); it names a run of a function the worker does not serve, which
    the worker leases nothing for. Other stores notify nothing."""
    if not db.startswith("postgresql:"):
        return
    heard: list[Mapping[str, str]] = []
    worker.on_wake = lambda _plain, named: heard.append(named)
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('stepline', %s)", ('[["elsewhere","mark"]]',))
        await until("our notification heard", lambda: any("mark" in n for n in heard))
    finally:
        worker.on_wake = None


def _asleep(worker: Any) -> bool:
    """No pass, no lease attempt in flight: the worker waits for a wake-up."""
    return not worker.active and worker._named.sleeping and not worker._wake.is_set()


async def _status(app: App, event_id: str, status: str) -> bool:
    runs = await app.runs(event_id=event_id)
    return bool(runs) and runs[0].status == status


async def test_a_waker_whose_loop_just_closed_does_not_keep_the_others_asleep(
    tmp_path: Path,
) -> None:
    # a worker's loop in another thread closes between ``Engine._wake``'s is_closed() check
    # and its call_soon_threadsafe: the call raised out of the wake-up (and out of a send's
    # after_ingest), and the wakers after it were never woken
    app = App("wakes", db=f"sqlite:///{tmp_path / 'w.db'}")
    gone = asyncio.new_event_loop()
    gone.close()
    try:
        gone.is_closed = lambda: False  # type: ignore[method-assign]  # closed after the check
        app.engine._wakers.append((gone, asyncio.Event()))
        mine = asyncio.Event()
        app.engine.add_waker(mine)
        app.engine.wake_workers()
        assert mine.is_set()
    finally:
        del gone.is_closed  # the loop's own again: it is closed (its finalizer asks)
        app.close()


@LOADING
async def test_a_run_its_worker_leases_when_its_sleep_ends_is_not_read_again_by_its_pass(
    app_db: str,
) -> None:
    """The worker's own lease attempt (a timer due, the run leased by it, not handed by a send)
    reads the runs it leases in its transaction too: the pass after the sleep starts loaded."""
    app = App("loaded", db=app_db)

    @app.function(id="napping", trigger=TriggerEvent("nap/go"))
    async def napping(ctx: Context) -> Any:
        await ctx.step.sleep("nap", 0.2)
        return await ctx.step.run("after", lambda: ctx.event.data["n"] + 1)

    reads = _count_loads(app)
    try:
        async with app.worker() as worker:
            await worker.ready.wait()
            await until("the worker to sleep", lambda: _asleep(worker))
            [event_id] = await app.send_async(Event(name="nap/go", data={"n": 41}))
            [run] = await app.runs(event_id=event_id)
            ended = await app.wait_for_run(run.run_id, timeout=30)
        assert ended.status == "COMPLETED" and ended.output == 42
        history = [h.kind for h in await app.history(run.run_id)]
        assert history.count("RUN_STARTED") == 1 and "RUN_COMPLETED" in history
        assert reads == []  # before: [run.run_id], the second pass's own read
    finally:
        app.close()
