"""Review R1 (fourteenth stop, the reviewer's repro): R8's fix (7bac4dc) checked a handed lease's
age when the worker took it (``HandOffs.take``), not when a run that took it waited for a slot
and was then started (fixed: such a lease is given back, never started from the handed state). A
run handed while the worker's one slot is still held by a pass whose function is unwinding (its
lease released by the pass's last commit) waited; the worker's loop is then held past the
lease's TTL (a blocking call in the function's ``finally:``), the waiting run's lease expires,
another worker takes the run over and commits its step; when the held loop runs again the
waiting run starts from the handed (stale) state and the committed step's body runs a second
time (its commit refused, its side effects not). Real-time sleeps: the hold is a real blocked
loop, as in test_pg_stale_handoff.py."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine import executor
from stepline.engine.worker import Worker


async def test_a_run_handed_without_a_free_slot_then_held_past_its_ttl_runs_no_step_twice(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the ended pass lets its function unwind as long as it takes (a function that absorbs
    # the cancel would do the same, with more code)
    monkeypatch.setattr(executor, "STOP_GRACE", 60.0)
    bodies: list[str] = []
    held: list[Worker] = []
    unwinding = threading.Event()
    apps = {name: App("waiting", db=pg_url) for name in ("held", "other", "sender")}
    for name, app in apps.items():

        def once(name: str = name) -> str:
            bodies.append(name)
            return name

        @app.function(id="once", trigger=TriggerEvent("once/go"))
        async def run_once(ctx: Context, once=once) -> str:
            return await ctx.step.run("s1", once)

        @app.function(id="nap", trigger=TriggerEvent("nap/go"))
        async def nap(ctx: Context) -> None:
            try:
                await ctx.step.sleep("nap", timedelta(hours=1))
            finally:
                if held and not unwinding.is_set():  # the held worker's first pass only
                    before = held[0].handed  # its hand-offs before "once" is sent
                    unwinding.set()
                    # the pass's last commit released the run's lease: the worker's slot is
                    # free in the store, still taken here (the function unwinds)
                    while held[0].handed <= before:
                        await asyncio.sleep(0.01)  # real time: until "once" is handed here
                    time.sleep(4.0)  # noqa: ASYNC251 (the loop is blocked twice the TTL)

    held_loop = asyncio.new_event_loop()
    held_ready = threading.Event()
    stop_held = threading.Event()

    async def serve_held() -> None:
        worker = Worker(
            apps["held"].engine,
            worker_id="held",
            poll_interval=None,
            lease_ttl=2.0,
            concurrency=1,
        )
        held.append(worker)
        task = asyncio.create_task(worker.run())
        await worker.ready.wait()
        held_ready.set()
        while not stop_held.is_set():
            await asyncio.sleep(0.05)  # real time: the thread's loop lives until told
        worker.stop()
        await task

    thread = threading.Thread(target=held_loop.run_until_complete, args=(serve_held(),))
    thread.start()
    try:
        assert await asyncio.to_thread(held_ready.wait, 30)
        await asyncio.to_thread(apps["sender"].send, Event("nap/go"))
        assert await asyncio.to_thread(unwinding.wait, 30), "the nap's pass never unwound"
        [event_id] = await asyncio.to_thread(apps["sender"].send, Event("once/go"))
        other = Worker(apps["other"].engine, worker_id="other", poll_interval=0.1, handoffs=False)
        other_task = asyncio.create_task(other.run())

        async def completed() -> bool:
            [run] = await apps["sender"].runs(event_id=event_id)
            return run.status == "COMPLETED"

        await until("the other worker to finish the run", completed, timeout=30)
        await asyncio.sleep(5.0)  # real time: the held loop runs again, its pass ends
        other.stop()
        await other_task
        assert bodies == ["other"], f"the step's body ran in {bodies}"
    finally:
        stop_held.set()
        await asyncio.to_thread(thread.join, 30)
        held_loop.close()
        for app in apps.values():
            app.close()
