"""When a round of steps starts: at once for a function whose steps all come from its own task
(it is blocked on the step it called), after the other branches settled otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import TestEngine


async def test_a_sequential_functions_step_starts_at_the_next_loop_turn(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # no waiting for "nothing new for two loop turns": the function's only branch is blocked
    turns = 0
    waited: list[int] = []  # loop turns from each step call to its body

    async def ticking() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    @app.function(id="steps", trigger=TriggerEvent("go"))
    async def steps(ctx: Context) -> Any:
        ticker = asyncio.create_task(ticking())  # a task of its own that calls no step
        try:
            for i in range(5):
                called = turns

                async def body(called: int = called, i: int = i) -> int:
                    waited.append(turns - called)
                    return i

                await ctx.step.run(f"s{i}", body)
        finally:
            ticker.cancel()
        return "done"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == "done"
    assert len(waited) == 5
    assert max(waited) <= 2, waited  # the two-turn wait took 4 or more


async def test_a_step_called_from_a_task_of_the_function_joins_the_same_round(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # a branch of its own (create_task, not gather) still makes the round wait for it: the
    # two steps run concurrently, each waiting for the other to start (no clock)
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    overlapped: list[str] = []

    def body(name: str, other: str) -> Callable[[], Any]:
        async def run() -> str:
            started[name].set()
            await asyncio.wait_for(started[other].wait(), 10)
            overlapped.append(name)
            return name

        return run

    @app.function(id="branches", trigger=TriggerEvent("go"))
    async def branches(ctx: Context) -> Any:
        branch = asyncio.create_task(ctx.step.run("a", body("a", "b")))
        b = await ctx.step.run("b", body("b", "a"))
        return [await branch, b]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED", run.error
    assert run.output == ["a", "b"]
    assert sorted(overlapped) == ["a", "b"]
