"""What Stepline does on an event loop works on asyncio's and on uvloop's (the loop its own
runners pick when uvloop is installed: ``stepline._loops``): a run of steps, a durable sleep
and an event wait, on every store. On PostgreSQL the steps' commits are made on the loop
(``LoopCommits``: the writer's ``Driven`` resumed by the kept connection's reader, registered
with the loop), on either loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from _polling import until

from stepline import App, Context, Event, TriggerEvent

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
STEPS = 12


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_steps_a_sleep_and_an_event_wait_on_either_loop(
    loop_name: str, store_kind: str, tmp_path: Path
) -> None:
    db = {"sqlite": f"sqlite:///{tmp_path / 's.db'}", "memory": "memory://"}.get(
        store_kind, store_kind
    )

    async def scenario() -> tuple[Any, str, int]:
        app = App("loops", db=db)

        @app.function(id="steps", trigger=TriggerEvent("go"))
        async def steps(ctx: Context) -> int:
            total = 0
            for i in range(STEPS):
                total += await ctx.step.run(f"s{i}", lambda i=i: i)
            await ctx.step.sleep("nap", 0.01)
            more = await ctx.step.wait_for_event("more", event="more", timeout="1m")
            assert more is not None
            return total + int(more.data["n"])

        worker = app.make_worker(worker_id="w", poll_interval=0.02)
        task = asyncio.create_task(worker.run())
        try:
            [event_id] = await app.send_async(Event("go"))
            [run] = await until("the run", lambda: app.runs(event_id=event_id))

            async def waiting() -> bool:
                state = await app.get_run(run.run_id)
                return state is not None and state.status == "WAITING"

            await until("the run waiting for the event", waiting, timeout=30)
            await app.send_async(Event("more", {"n": 5}))
            done = await app.wait_for_run(run.run_id, timeout=30)
            loop_module = type(asyncio.get_running_loop()).__module__
            return done, loop_module, app.engine.writer.loop_commits
        finally:
            worker.stop()
            await task
            app.close()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        done, loop_module, loop_commits = runner.run(scenario())
    assert loop_module.startswith(loop_name)
    assert done.status == "COMPLETED" and done.output == sum(range(STEPS)) + 5
    if store_kind not in ("sqlite", "memory"):  # PostgreSQL: the steps committed on the loop
        assert loop_commits >= STEPS
