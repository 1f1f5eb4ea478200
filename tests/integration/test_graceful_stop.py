"""A worker stopped gracefully keeps its leases alive until its passes end.

Virtual time, event-driven waits (issue 6 item 8): the step in flight waits on an event, not on a
real ``sleep(1.2)`` racing a 0.3 s lease; the test moves the clock half a lease at a time and
waits for a heartbeat that began after each move, so the lease can only expire if heartbeats
stop during the graceful stop (the behaviour under test), never because the machine was slow.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _polling import until

import pgtest
from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.testing import MockClock

TTL = 0.3  # virtual seconds; worker a heartbeats every TTL / 3 real seconds


def looks(worker: Worker, target: int) -> bool:
    """Wake ``worker`` (it sleeps till the clock moves again otherwise); True once it has made
    ``target`` lease attempts: the second from now began after the clock moved."""
    worker.wake()
    return worker.loops >= target


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)  # real time: 1.7 s
async def test_a_long_step_during_a_graceful_stop_is_not_run_again(
    store_kind: str, tmp_path: Path
) -> None:
    clock = MockClock(autojump=False)
    app = App("stop")
    app.attach(pgtest.opened_store(store_kind, tmp_path / "stop.db"), clock)
    runs = {"slow": 0}
    started = asyncio.Event()
    release = asyncio.Event()

    @app.function(id="slow", trigger=TriggerEvent("go"))
    async def slow(ctx: Context) -> Any:
        async def body() -> str:
            runs["slow"] += 1
            started.set()
            await release.wait()  # "long": until four lease lifetimes have passed
            return "done"

        return await ctx.step.run("body", body)

    first = app.make_worker(worker_id="a", lease_ttl=TTL, poll_interval=0.05)
    task = asyncio.create_task(first.run())
    second = app.make_worker(worker_id="b", lease_ttl=TTL, poll_interval=0.05)
    other: asyncio.Task[None] | None = None
    try:
        [event_id] = await app.send_async(Event("go"))
        await asyncio.wait_for(started.wait(), 10)
        first.stop()  # graceful: the step in flight finishes, its lease heartbeated meanwhile
        other = asyncio.create_task(second.run())
        await asyncio.wait_for(second.ready.wait(), 10)
        for _ in range(8):  # four lease lifetimes, half a lifetime at a time
            beats, looked = first.heartbeats, second.loops
            clock.advance(TTL / 2)
            # the second heartbeat from now began after the move: the lease outlives it
            await until("worker a to heartbeat", lambda b=beats: first.heartbeats >= b + 2)
            await until("worker b to look for work twice", lambda n=looked: looks(second, n + 2))
            assert runs["slow"] == 1  # b never took the run over
        release.set()
        [run] = await app.runs(event_id=event_id)
        done = await app.wait_for_run(run.run_id, timeout=20)
    finally:
        release.set()
        second.stop()
        await asyncio.gather(task, *([other] if other else []))
        app.close()
    assert done.output == "done"
    assert runs["slow"] == 1
