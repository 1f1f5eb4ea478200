"""PostgreSQL hand-offs within their bounds (the reviewer's repros of R1 and R2, thirteenth
stop): a worker's ``concurrency`` holds when another process's send hands it new runs (one send
of three events, three new runs, while a worker of ``concurrency=1`` is idle: never more than
one pass at a time), and a notification never exceeds PostgreSQL's 8,000 bytes (an event with a
7,990-character id: its run is named, not handed, and the send succeeds)."""

from __future__ import annotations

import asyncio
import threading

from _polling import until

from stepline import App, Context, Event, TriggerEvent


async def test_one_send_of_three_runs_never_runs_three_passes_on_a_worker_of_one_slot(
    pg_url: str,
) -> None:
    app, sender = App("slots", db=pg_url), App("slots", db=pg_url)
    lock = threading.Lock()
    running, most, ended = [0], [0], [0]
    release = threading.Event()

    def hold() -> str:  # a sync step: runs in a thread, holds its slot until released
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
            ended[0] += 1
        return "held"

    @app.function(id="hold", trigger=TriggerEvent("hold/please"))
    async def held(ctx: Context) -> str:
        return await ctx.step.run("hold", hold)

    @sender.function(id="hold", trigger=TriggerEvent("hold/please"))
    async def held_too(ctx: Context) -> str:
        return "never here"

    try:
        async with app.worker(worker_id="one-slot", concurrency=1, poll_interval=None) as worker:
            await asyncio.wait_for(worker.ready.wait(), 30)
            await until("the worker to have looked for work once", lambda: worker.loops >= 1)
            await asyncio.to_thread(sender.send, [])  # (registers the sender's catalog)
            events = [Event("hold/please", {"n": n}) for n in range(3)]
            await asyncio.to_thread(sender.send, events)
            await until("a pass to hold its slot", lambda: most[0] >= 1)
            # a wrongly started second or third pass reaches its step within this time; a
            # correct worker starts none (nothing to wait for: the queue holds them)
            await asyncio.sleep(1.0)  # real time: the window for a pass that must not start
            seen = most[0]
            release.set()
            await until("the three runs to end", lambda: ended[0] == 3, timeout=60)
            assert seen == 1, f"{seen} passes ran at once on a worker of concurrency=1"
    finally:
        release.set()
        sender.close()
        app.close()


async def test_a_send_whose_event_has_a_long_id_is_stored_and_its_run_completes(
    pg_url: str,
) -> None:
    """An event id (the sender's, any length; also the event's name, the function's and app's
    ids) is not counted by the hand-off's payload bound: the notification must never be over
    PostgreSQL's 8,000 bytes, else pg_notify fails the sender's transaction (StoreError)."""
    app, sender = App("long-ids", db=pg_url), App("long-ids", db=pg_url)

    @app.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet(ctx: Context) -> str:
        return await ctx.step.run("hello", lambda: "hello")

    @sender.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet_too(ctx: Context) -> str:
        return "never here"

    try:
        async with app.worker(worker_id="idle", poll_interval=None) as worker:
            await asyncio.wait_for(worker.ready.wait(), 30)
            await until("the worker to have looked for work once", lambda: worker.loops >= 1)
            await asyncio.to_thread(sender.send, Event("greet/please"))  # registers the sender
            await until("the worker idle", lambda: not worker.active)
            event = Event("greet/please", {}, id="x" * 7990)
            [event_id] = await asyncio.to_thread(sender.send, event)
            [run] = await app.runs(event_id=event_id)

            async def completed() -> bool:
                found = await app.get_run(run.run_id)
                return found is not None and found.status == "COMPLETED"

            await until("the run to complete", completed, timeout=30)
    finally:
        sender.close()
        app.close()
