"""A step called from inside another step's body fails that body at once, with an error that
names it, instead of hanging the pass for ever (review R6 of the thirteenth stop; issue 6 item 4:
a pass ends, whatever the user's code does). Inngest's SDKs refuse nested steps too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, SyncContext, TriggerEvent
from stepline.testing import TestEngine

NESTED = "step 'inner' was called inside the body of another step"


def assert_failed_by_nesting(run: Any, attempts: list[str]) -> None:
    assert run.status == "FAILED", (run.status, run.output)
    # the outer step failed, once, and the function (which did not catch it) with it
    assert run.error["name"] == "StepError", run.error
    assert f"step 'outer' failed: NonRetriableError: {NESTED}" in run.error["message"], run.error
    assert attempts == ["outer"], attempts  # not retried: the mistake is in the code


async def test_a_step_awaited_inside_a_step_fails_the_run_instead_of_hanging(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    attempts: list[str] = []

    @app.function(id="nest", trigger=TriggerEvent("go"))
    async def nest(ctx: Context) -> str:
        async def outer() -> str:
            attempts.append("outer")
            return await ctx.step.run("inner", lambda: "in")

        return await ctx.step.run("outer", outer)

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=20)
        assert_failed_by_nesting(run, attempts)
        [outer] = run.steps  # no row for the inner step: it was never made
        assert (outer.id, outer.status) == ("outer", "FAILED")


async def test_a_step_in_a_task_a_step_body_started_is_refused_too(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    attempts: list[str] = []

    @app.function(id="nest-task", trigger=TriggerEvent("go"))
    async def nest_task(ctx: Context) -> None:
        async def outer() -> None:
            attempts.append("outer")
            await asyncio.create_task(ctx.step.sleep("inner", 1))  # the task copies the context

        await ctx.step.run("outer", outer)

    async with make_engine() as t:
        assert_failed_by_nesting(await t.trigger(Event("go"), timeout=20), attempts)


async def test_a_sync_functions_step_called_inside_its_step_body_is_refused(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    attempts: list[str] = []

    @app.function(id="nest-sync", trigger=TriggerEvent("go"))
    def nest_sync(ctx: SyncContext) -> str:
        def outer() -> str:
            attempts.append("outer")
            return ctx.step.run("inner", lambda: "in")

        return ctx.step.run("outer", outer)

    async with make_engine() as t:
        assert_failed_by_nesting(await t.trigger(Event("go"), timeout=20), attempts)


async def test_a_body_that_catches_the_refusal_completes_its_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="nest-caught", trigger=TriggerEvent("go"))
    async def nest_caught(ctx: Context) -> Any:
        async def outer() -> str:
            try:
                await ctx.step.run("inner", lambda: "in")
            except Exception as exc:  # the refusal is what the test looks at
                return f"{type(exc).__name__}: {exc}"
            return "nested"

        first = await ctx.step.run("outer", outer)
        second = await ctx.step.run("after", lambda: "after")  # steps after it still run
        return [first, second]

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=20)
        assert run.status == "COMPLETED", (run.status, run.error)
        refusal, after = run.output
        assert refusal.startswith("NonRetriableError: " + NESTED), refusal
        assert after == "after"
