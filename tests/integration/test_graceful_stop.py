"""A worker stopped gracefully keeps its leases alive until its passes end (real clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stepline import App, Context, Event, TriggerEvent


async def test_a_long_step_during_a_graceful_stop_is_not_run_again(tmp_path: Path) -> None:
    app = App("stop", db=f"sqlite:///{tmp_path / 'stop.db'}")
    runs = {"slow": 0}
    started = asyncio.Event()

    @app.function(id="slow", trigger=TriggerEvent("go"))
    async def slow(ctx: Context) -> Any:
        async def body() -> str:
            runs["slow"] += 1
            started.set()
            await asyncio.sleep(1.2)  # four lease lifetimes
            return "done"

        return await ctx.step.run("body", body)

    first = app.make_worker(worker_id="a", lease_ttl=0.3, poll_interval=0.05)
    task = asyncio.create_task(first.run())
    [event_id] = await app.send_async(Event("go"))
    await asyncio.wait_for(started.wait(), 10)
    first.stop()  # graceful: the step in flight finishes, its lease heartbeated meanwhile
    second = app.make_worker(worker_id="b", lease_ttl=0.3, poll_interval=0.05)
    other = asyncio.create_task(second.run())
    try:
        [run] = await app.runs(event_id=event_id)
        done = await app.wait_for_run(run.run_id, timeout=20)
    finally:
        second.stop()
        await asyncio.gather(task, other)
        app.close()
    assert done.output == "done"
    assert runs["slow"] == 1
