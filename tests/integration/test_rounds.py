"""When a round of steps starts: at once for a function whose steps all come from its own task
(it is blocked on the step it called), after the other branches settled otherwise; and a pass
suspends only after the other branches settled, whatever task its steps came from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import TestEngine


async def test_a_sequential_functions_step_starts_at_the_next_loop_turn(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # no waiting for "nothing new for two loop turns": the function's only branch is blocked.
    # What the shortcut saves is loop turns (CPU on the sequential hot path); no other outcome
    # tells it apart from the two-turn wait, so loop turns are what this test counts
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


async def test_a_branch_awaiting_before_its_step_is_retried_on_its_backoff(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # a pass that replays the function up to a wait still pending suspends only once the other
    # branches settled: a branch that awaits something before its first step call (here one
    # loop turn) has its due retry made in that pass, not when the wait ends (its 1 h timeout)
    attempts: list[float] = []

    @app.function(id="branching", trigger=TriggerEvent("go"), retries=1)
    async def branching(ctx: Context) -> Any:
        def flaky() -> str:
            attempts.append(t.clock.now())
            if len(attempts) == 1:
                raise ValueError("once")
            return "a"

        async def side() -> Any:
            await asyncio.sleep(0)  # anything awaited before the step: one loop turn
            return await ctx.step.run("a", flaky)

        branch = asyncio.create_task(side())
        paid = await ctx.step.wait_for_event("w", event="paid", timeout="1h")
        return [await branch, paid is None]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == ["a", True]
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] < 600, attempts  # on its backoff (seconds), not 1 h later
