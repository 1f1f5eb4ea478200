"""Review R3 (fourteenth stop, the reviewer's repro): a run handed to a PostgreSQL worker with no
slot free here (the store saw a free slot the worker counts as taken) waited for one and was
then started from the handed state whatever happened to it meanwhile: cancelled while it
waited, its pass still ran its first step's body (its commit then refused). Such a lease is now
given back (``Worker._cut_short``: expired by the next lease attempt, which reads the run
again), never started from the handed state: a run cancelled before that never runs a step.

The slot is held by a pass whose function is still unwinding after its last commit released its
lease (an ``await`` in its ``finally:``); the same wait happens when two senders hand the
worker its last free slot at once, or while its own lease attempt is in flight. No loop is
blocked: the waiting run's lease is heartbeated and valid all along."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine import executor
from stepline.engine.worker import Worker


async def test_a_run_handed_without_a_free_slot_then_cancelled_runs_no_step(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the ended pass lets its function unwind as long as it takes
    monkeypatch.setattr(executor, "STOP_GRACE", 60.0)
    bodies: list[str] = []
    unwinding = asyncio.Event()
    release = asyncio.Event()
    apps = [App("waiting-cancelled", db=pg_url) for _ in range(2)]
    for app in apps:

        def charge() -> str:
            bodies.append("charge")
            return "charged"

        @app.function(id="once", trigger=TriggerEvent("once/go"))
        async def run_once(ctx: Context, charge=charge) -> str:
            return await ctx.step.run("charge", charge)

        @app.function(id="nap", trigger=TriggerEvent("nap/go"))
        async def nap(ctx: Context) -> None:
            try:
                await ctx.step.sleep("nap", timedelta(hours=1))
            finally:
                if not unwinding.is_set():
                    # the pass's last commit released the run's lease: the worker's one slot
                    # is free in the store, still taken here until the function has unwound
                    unwinding.set()
                    await release.wait()

    app, sender = apps
    try:
        worker = Worker(app.engine, worker_id="w", poll_interval=None, concurrency=1)
        task = asyncio.create_task(worker.run())
        await worker.ready.wait()
        await asyncio.to_thread(sender.send, [])  # the sender's catalog registered
        await asyncio.to_thread(sender.send, Event("nap/go"))
        await until("the nap's function to unwind", unwinding.is_set, timeout=30)
        handed = worker.handed
        [event_id] = await asyncio.to_thread(sender.send, Event("once/go"))
        await until(
            "the run handed to the worker while its slot is taken",
            lambda: worker.handed > handed,
            timeout=30,
        )
        [run] = await sender.runs(event_id=event_id)
        assert await sender.cancel_run(run.run_id)
        release.set()  # the nap's function ends: the slot is free here too

        async def cancelled() -> bool:
            [found] = await sender.runs(event_id=event_id)
            return found.status == "CANCELLED"

        await until("the run cancelled", cancelled, timeout=30)
        await until("the worker idle", lambda: not worker.active)
        worker.stop()
        await task
        assert bodies == [], f"a step of the cancelled run ran: {bodies}"
    finally:
        release.set()
        sender.close()
        app.close()
