"""PostgreSQL: a run held back by a full concurrency key starts as soon as the run holding the
slot ends in another process, on a worker that never polls: the end of a run whose lease held a
concurrency slot wakes the workers (a run without keys wakes none: ``tests/store/
test_pg_end_wakeups.py``)."""

from __future__ import annotations

import asyncio

from _polling import until

from stepline import App, Concurrency, Context, Event, TriggerEvent
from stepline.clock import Idle
from stepline.engine.worker import Worker
from stepline.store.records import PassCommit, RunEnd


async def test_a_run_held_back_by_a_full_key_starts_when_another_process_frees_the_slot(
    pg_url: str,
) -> None:
    """The worker has a pass in flight (a busy slot of its own), so it waits for a wake-up,
    not for the short look it makes while idle behind a full key; the run in the key's one slot
    is leased and ended by another App on the database (its own engine and store, as another
    process would have: only NOTIFY reaches the worker)."""
    app = App("slots", db=pg_url)
    other = App("slots", db=pg_url)
    go = asyncio.Event()
    started: list[int] = []

    for each in (app, other):

        @each.function(id="busy", trigger=TriggerEvent("busy/please"))
        async def busy(ctx: Context) -> int:
            await go.wait()
            return 0

        @each.function(
            id="limited", trigger=TriggerEvent("limited/please"), concurrency=[Concurrency(1)]
        )
        async def limited(ctx: Context) -> int:
            started.append(int(ctx.event.data["n"]))
            return 1

    worker = Worker(app.engine, poll_interval=None, concurrency=4)
    # asleep with no deadline while its pass runs: only a wake-up (the NOTIFY) ends that sleep
    asleep = asyncio.Event()
    sleep_until = app.engine.clock.sleep_until

    async def watched(deadline: float | None, wake: asyncio.Event, *, idle: Idle = False) -> None:
        if deadline is None and worker.active:
            asleep.set()
        try:
            await sleep_until(deadline, wake, idle=idle)
        finally:
            asleep.clear()

    app.engine.clock.sleep_until = watched  # type: ignore[method-assign]
    task: asyncio.Task[None] | None = None
    try:
        [first_event] = await other.send_async(Event("limited/please", {"n": 1}))
        await other.send_async(Event("limited/please", {"n": 2}))
        store, served = other.engine.store, other.engine.served
        now = other.engine.clock.now()
        with store.transaction() as tx:  # the slot: another process's worker's
            [held] = tx.lease_due("elsewhere", now, 1, 30.0, served)
        [first] = await other.runs(event_id=first_event)
        assert held.run_id == first.run_id
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.tried.wait(), 30)
        await app.send_async(Event("busy/please"))
        await until("the busy pass", lambda: len(worker.active) == 1, timeout=30)
        # its loop back asleep for good (no deadline: no more short looks behind the full key)
        await asyncio.wait_for(asleep.wait(), 30)
        assert started == [] and len(worker.active) == 1
        end = RunEnd("COMPLETED", output_json=b"1")
        with store.transaction() as tx:  # the pass in the slot ends there
            tx.commit_pass(PassCommit(held.run_id, held.token, end=end), now, lambda w, e: False)
        await until("the run behind the key started", lambda: started == [2], timeout=30)
    finally:
        go.set()
        worker.stop()
        if task is not None:
            await task
        other.close()
        app.close()
