"""A lone step's round in the function's own task (``PassExecutor._lone_round``): a ``run`` step
the function's only task calls while the pass waits for it is executed and committed in that
task, its result returned once committed, with no wake-up of the pass. Its body runs in the
pass's context (as in the pass's rounds: none of the function's, and what it sets stays out of
the function); a failed attempt is the pass's round to record; a step called while another task
of the function lives goes to the pass's rounds (it may have to run beside that task's)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.engine import _branches
from stepline.engine.executor import PassExecutor
from stepline.testing import TestEngine

FUNCTION_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("FUNCTION_VAR", default="-")
STEP_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("STEP_VAR", default="-")


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The step ids of each round the pass ran itself (``_run_round``)."""
    found: list[list[str]] = []
    run_round = PassExecutor._run_round

    async def counted(self: PassExecutor, ops: list[Any]) -> None:
        found.append([op.step_id for op in ops])
        await run_round(self, ops)

    monkeypatch.setattr(PassExecutor, "_run_round", counted)
    return found


async def test_a_sequential_functions_steps_are_run_and_committed_in_its_own_task(
    app: App, make_engine: Callable[..., TestEngine], rounds: list[list[str]]
) -> None:
    tasks: list[object] = []

    async def body(i: int) -> int:
        tasks.append(asyncio.current_task())
        return i * 10

    @app.function(id="steps", trigger=TriggerEvent("go"))
    async def steps(ctx: Context) -> Any:
        tasks.append(asyncio.current_task())
        return [await ctx.step.run(f"s{i}", body, i) for i in range(3)]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        engine = t.app.engine
        memo = await engine.read(engine.store.get_steps, run.run_id)
    assert run.output == [0, 10, 20]
    assert tasks[1:] == [tasks[0]] * 3  # each body in the function's task
    assert rounds == []  # not one round of the pass's
    assert [(s.step_id, s.status) for s in memo] == [
        ("s0", "COMPLETED"),
        ("s1", "COMPLETED"),
        ("s2", "COMPLETED"),
    ]


async def test_a_step_body_runs_in_the_passs_context_not_the_functions(
    app: App, make_engine: Callable[..., TestEngine], rounds: list[list[str]]
) -> None:
    seen: list[tuple[str, str, bool]] = []

    async def body(name: str) -> str:
        # what the function set is not seen; what a step body sets, the next one sees; the
        # tasks a body starts are not the function's (no pass's Branches in its context)
        seen.append((FUNCTION_VAR.get(), STEP_VAR.get(), _branches._OWNER.get() is None))
        STEP_VAR.set(name)
        return name

    @app.function(id="vars", trigger=TriggerEvent("go"))
    async def uses_vars(ctx: Context) -> Any:
        FUNCTION_VAR.set("the function's")
        first = await ctx.step.run("a", body, "a")
        after = STEP_VAR.get()  # a step body's setting stays out of the function
        second = await ctx.step.run("b", body, "b")
        return [first, second, after]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == ["a", "b", "-"]
    assert seen == [("-", "-", True), ("-", "a", True)]
    assert rounds == []


async def test_a_failed_attempt_is_recorded_by_the_passs_round(
    app: App, make_engine: Callable[..., TestEngine], rounds: list[list[str]]
) -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise RuntimeError("once")
        return "ok"

    @app.function(id="flaky", trigger=TriggerEvent("go"), retries=2)
    async def calls_flaky(ctx: Context) -> Any:
        return await ctx.step.run("flaky", flaky)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        history = [h.kind for h in await t.history(run.run_id) if h.step_id == "flaky"]
    assert run.output == "ok"
    assert attempts == [0, 1]  # the failed attempt ran once, not again in the pass's round
    assert rounds == [["flaky"]]  # its failure: the pass's round (RETRYING)
    assert history == ["STEP_FAILED", "STEP_COMPLETED"]


async def test_a_step_called_while_another_task_of_the_function_lives_is_the_passs(
    app: App, make_engine: Callable[..., TestEngine], rounds: list[list[str]]
) -> None:
    # the other task's step may come while this one's body runs: both in one round of the
    # pass's, each attempted once (a lone round would hold the other's step until it ended)
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    attempts: list[str] = []

    def body(name: str, other: str) -> Callable[[], Any]:
        async def run() -> str:
            attempts.append(name)
            started[name].set()
            await asyncio.wait_for(started[other].wait(), 10)
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
    assert sorted(attempts) == ["a", "b"]
    assert [sorted(ids) for ids in rounds] == [["a", "b"]]
