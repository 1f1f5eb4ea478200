"""Review R8 (thirteenth stop): a lease handed to a worker whose event loop is held past the
lease's TTL (a blocking call in an async function) expires; another worker takes the run over
and commits its step. When the first worker's loop runs again, it must not start a pass from
the handed (stale) state: the committed step's body would run a second time (its commit is
refused, its side effects are not). Real-time sleeps: the hold is a real blocked loop."""

from __future__ import annotations

import asyncio
import threading
import time

from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker


async def test_a_handed_lease_that_expired_unread_starts_no_pass(pg_url: str) -> None:
    bodies: list[str] = []
    apps = {name: App("stale", db=pg_url) for name in ("held", "other", "sender")}
    for name, app in apps.items():

        def once(name: str = name) -> str:
            bodies.append(name)
            return name

        @app.function(id="once", trigger=TriggerEvent("once/go"))
        async def run_once(ctx: Context, once=once) -> str:
            return await ctx.step.run("s1", once)

    held_loop = asyncio.new_event_loop()
    held_ready = threading.Event()
    stop_held = threading.Event()

    async def serve_held() -> None:
        worker = Worker(apps["held"].engine, worker_id="held", poll_interval=None, lease_ttl=2.0)
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
        await asyncio.to_thread(apps["sender"].send, [])  # the sender's catalog registered
        # the held worker's loop is blocked 4 s (twice its TTL) from now
        blocked = threading.Event()

        def block() -> None:
            blocked.set()
            time.sleep(4.0)  # real time: a blocking call in the loop (what the test is about)

        held_loop.call_soon_threadsafe(block)
        assert await asyncio.to_thread(blocked.wait, 30)  # the block has begun
        [event_id] = await asyncio.to_thread(apps["sender"].send, Event("once/go"))
        other = Worker(apps["other"].engine, worker_id="other", poll_interval=0.1)
        other_task = asyncio.create_task(other.run())

        async def completed() -> bool:
            [run] = await apps["sender"].runs(event_id=event_id)
            return run.status == "COMPLETED"

        await until("the other worker to finish the run", completed, timeout=30)
        await asyncio.sleep(5.0)  # real time: the held loop runs again and reads its hand-off
        other.stop()
        await other_task
        assert bodies == ["other"], f"the step's body ran in {bodies}"
    finally:
        stop_held.set()
        await asyncio.to_thread(thread.join, 30)
        held_loop.close()
        for app in apps.values():
            app.close()
