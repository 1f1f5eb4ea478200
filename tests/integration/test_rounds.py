"""When a round of steps starts: at once for a function whose steps all come from its own task
(it is blocked on the step it called), after the other branches settled otherwise; and a pass
suspends only after the other branches settled, whatever task its steps came from."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from stepline import App, Context, Event, Run, SyncContext, TriggerEvent
from stepline.engine import executor
from stepline.testing import TestEngine


async def five_loop_turns() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def a_real_await() -> None:
    # real time, on purpose: a timer of the loop (as an HTTP call would be) is an await no
    # count of loop turns sees the end of; 10 ms is the shortest that is surely not a turn
    await asyncio.sleep(0.01)


async def one_loop_turn() -> None:
    await asyncio.sleep(0)


GRACE_SPENT = "suspending while tasks of the function still run"  # logged when it ran out

BEFORE_THE_STEP = pytest.mark.parametrize(
    "before", [one_loop_turn, five_loop_turns, a_real_await], ids=["1turn", "5turns", "real"]
)


class _Turns:
    """The loop turns counted by a task that only yields (``tick``), from its first turn on."""

    def __init__(self) -> None:
        self.count = 0

    async def tick(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)


async def test_a_sequential_functions_step_starts_at_the_next_loop_turn(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # no waiting for "nothing new for two loop turns": the function's only branch is blocked.
    # What the shortcut saves is loop turns (CPU on the sequential hot path); no other outcome
    # tells it apart from the two-turn wait, so loop turns are what this test counts
    turns = _Turns()
    waited: list[int] = []  # loop turns from each step call to its body

    @app.function(id="steps", trigger=TriggerEvent("go"))
    async def steps(ctx: Context) -> Any:
        ticker = asyncio.create_task(turns.tick())  # a task of its own that calls no step
        try:
            for i in range(5):
                called = turns.count

                async def body(called: int = called, i: int = i) -> int:
                    waited.append(turns.count - called)
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


async def test_a_passs_first_step_starts_in_the_loop_turn_its_function_called_it(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # the pass lets its function's first turn run before it looks for a step: the first step
    # call is found registered in that same turn, not a turn later (the pass woken by it).
    # Only loop turns tell the two apart (a turn less from a run's start to its first body)
    turns = _Turns()
    waited: list[int] = []

    @app.function(id="first", trigger=TriggerEvent("go"))
    async def first(ctx: Context) -> Any:
        ticker = asyncio.create_task(turns.tick())  # counts from the next turn on
        called = turns.count

        async def body() -> int:
            waited.append(turns.count - called)
            return 1

        try:
            return await ctx.step.run("s", body)
        finally:
            ticker.cancel()

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == 1
    assert waited == [0]  # woken by the call, the pass ran the body a turn later: [1]


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


async def test_parallel_steps_of_a_sync_function_run_in_one_round(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # a sync function's own thread starts rounds at once (it is blocked on its step call), but
    # the tasks of its step.parallel are branches: both steps run concurrently (no clock)
    started = {"a": threading.Event(), "b": threading.Event()}
    overlapped: list[str] = []

    def body(name: str, other: str) -> Callable[[], str]:
        def run() -> str:
            started[name].set()
            if started[other].wait(10):
                overlapped.append(name)
            return name

        return run

    @app.function(id="sync-parallel", trigger=TriggerEvent("go"))
    def sync_parallel(ctx: SyncContext) -> Any:
        first = ctx.step.run("first", lambda: 1)
        return [first, *ctx.step.parallel(("a", body("a", "b")), ("b", body("b", "a")))]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == [1, "a", "b"]
    assert sorted(overlapped) == ["a", "b"]


@BEFORE_THE_STEP
async def test_a_branch_awaiting_before_its_step_is_retried_on_its_backoff(
    app: App,
    make_engine: Callable[..., TestEngine],
    before: Callable[[], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a pass that replays the function up to a wait still pending suspends only once the other
    # branches settled: a branch that awaits something before its first step call (loop turns,
    # or a real await) has its due retry made in that pass, not when the wait ends (its 1 h
    # timeout)
    attempts: list[float] = []

    @app.function(id="branching", trigger=TriggerEvent("go"), retries=1)
    async def branching(ctx: Context) -> Any:
        def flaky() -> str:
            attempts.append(t.clock.now())
            if len(attempts) == 1:
                raise ValueError("once")
            return "a"

        async def side() -> Any:
            await before()
            return await ctx.step.run("a", flaky)

        branch = asyncio.create_task(side())
        paid = await ctx.step.wait_for_event("w", event="paid", timeout="1h")
        return [await branch, paid is None]

    caplog.set_level(logging.WARNING, logger="stepline")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == ["a", True]
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] < 600, attempts  # on its backoff (seconds), not 1 h later
    assert GRACE_SPENT not in caplog.text  # it settled: no task left working


async def test_a_branch_released_by_the_passs_suspension_logs_no_unretrieved_exception(
    app: App, make_engine: Callable[..., TestEngine], caplog: pytest.LogCaptureFixture
) -> None:
    # a task the function started and did not join whose step call the suspension released
    # ends with the engine's own signal: asyncio logged "Task exception was never retrieved"
    # (an ERROR with a traceback of stepline's internals) when it was collected; it is the
    # engine's to retrieve, as it does the function's own task's
    @app.function(id="unjoined", trigger=TriggerEvent("go"))
    async def unjoined(ctx: Context) -> Any:
        async def side() -> Any:
            return await ctx.step.wait_for_event("never", event="never", timeout="1h")

        branch = asyncio.create_task(side())
        await ctx.step.sleep("nap", "1s")
        return branch.done()

    caplog.set_level(logging.ERROR, logger="asyncio")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        assert run.status == "COMPLETED"
    gc.collect()
    assert "never retrieved" not in caplog.text


class Passes:
    """Which pass of a function (its invocations: each pass replays it) ran a step's body."""

    def __init__(self) -> None:
        self.count = 0
        self.ran_in: list[int] = []

    async def ran_once(self, t: TestEngine, run: Run, caplog: pytest.LogCaptureFixture) -> None:
        """Assert the step's body ran once, in the first pass (inside ``async with``; the tests
        assert it again once the worker stopped, for a pass that ends after the run). Else
        the failure tells the two ways it can run again apart: the first pass's commit of it
        never landed (a store failure between the body and its commit: passes 3, one
        STEP_COMPLETED, the log says what failed; at least once, by design), or it landed
        and a later pass did not see it (passes 2, two STEP_COMPLETED: an engine bug)."""
        if self.ran_in == [1]:
            return
        kinds = [entry.kind for entry in await t.history(run.run_id)]
        worker = t.worker
        outages = None if worker is None else worker.outage.outages
        log = "\n".join(
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for r in caplog.records
            if r.name.startswith("stepline") and r.levelno >= logging.INFO
        )
        raise AssertionError(
            f"step 'a' ran in passes {self.ran_in} of {self.count} (outages: {outages}); "
            f"history: {kinds}; stepline log:\n{log}"
        )

    def side(self, ctx: Context, before: Callable[[], Any]) -> Coroutine[Any, Any, Any]:
        """A branch: ``before()``, then step ``a``."""

        def body() -> str:
            self.ran_in.append(self.count)
            return "a"

        async def side() -> Any:
            await before()
            return await ctx.step.run("a", body)

        return side()


Branch = Coroutine[Any, Any, Any]


async def gathered(wait: Branch, side: Branch) -> list[Any]:
    return list(await asyncio.gather(wait, side))


async def grouped(wait: Branch, side: Branch) -> list[Any]:
    async with asyncio.TaskGroup() as group:  # the function's task waits in its exit
        tasks = [group.create_task(wait), group.create_task(side)]
    return [task.result() for task in tasks]


@pytest.mark.parametrize(
    ("join", "before"),
    [
        (gathered, one_loop_turn),
        (gathered, five_loop_turns),
        (gathered, a_real_await),
        (grouped, five_loop_turns),
    ],
    ids=["gather-1turn", "gather-5turns", "gather-real", "taskgroup-5turns"],
)
async def test_a_joined_branch_awaiting_before_its_step_runs_it_in_the_same_pass(
    app: App,
    make_engine: Callable[..., TestEngine],
    join: Callable[[Branch, Branch], Awaitable[list[Any]]],
    before: Callable[[], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the function's own task waits on the gather or in the TaskGroup's exit (not on a step,
    # not on a task): the pass still waits for the branch that has not called its step yet,
    # which runs in the first pass
    passes = Passes()

    @app.function(id="joining", trigger=TriggerEvent("go"))
    async def joining(ctx: Context) -> Any:
        passes.count += 1
        wait = ctx.step.wait_for_event("w", event="paid", timeout="1h")
        paid, a = await join(wait, passes.side(ctx, before))
        return [a, paid is None]

    caplog.set_level(logging.INFO, logger="stepline")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        await passes.ran_once(t, run, caplog)  # not in the pass the wait's timeout woke
    assert passes.ran_in == [1]  # also once the worker stopped: no pass ending late ran it
    assert run.output == ["a", True]
    assert GRACE_SPENT not in caplog.text  # it settled: no task left working


@BEFORE_THE_STEP
async def test_a_sequential_functions_task_gets_its_step_before_the_pass_suspends(
    app: App,
    make_engine: Callable[..., TestEngine],
    before: Callable[[], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # every step so far came from the function's own task (its rounds start at once), which
    # then sleeps 1 h: the task it started still gets its step run in that pass
    passes = Passes()

    @app.function(id="napping", trigger=TriggerEvent("go"))
    async def napping(ctx: Context) -> Any:
        passes.count += 1
        branch = asyncio.create_task(passes.side(ctx, before))
        await ctx.step.sleep("nap", "1h")
        return await branch

    caplog.set_level(logging.INFO, logger="stepline")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        await passes.ran_once(t, run, caplog)
    assert passes.ran_in == [1]  # also once the worker stopped: no pass ending late ran it
    assert run.output == "a"


@pytest.mark.parametrize("before", [five_loop_turns, a_real_await], ids=["5turns", "real"])
async def test_the_functions_task_working_while_its_branch_waits_gets_its_step_in_the_pass(
    app: App,
    make_engine: Callable[..., TestEngine],
    before: Callable[[], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the function's own task has a task of its own blocked on a wait, and awaits something
    # else (not its task) before its next step: it is working, not waiting for its branch
    passes = Passes()

    @app.function(id="working", trigger=TriggerEvent("go"))
    async def working(ctx: Context) -> Any:
        passes.count += 1
        branch = asyncio.create_task(ctx.step.wait_for_event("w", event="paid", timeout="1h"))
        a = await passes.side(ctx, before)  # in the function's own task
        return [a, await branch is None]

    caplog.set_level(logging.INFO, logger="stepline")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        await passes.ran_once(t, run, caplog)
    assert passes.ran_in == [1]  # also once the worker stopped: no pass ending late ran it
    assert run.output == ["a", True]
    assert GRACE_SPENT not in caplog.text


async def test_a_task_left_working_delays_the_suspension_by_a_grace_then_is_released(
    app: App,
    make_engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a task that neither calls a step nor ends (fire and forget) cannot hold the run: the pass
    # suspends after SUSPEND_GRACE (real seconds, shortened here to 50 ms), naming the task in
    # its warning; the tasks a pass leaves running are released, never cancelled (a library's
    # background task must outlive the pass: test_branches_lifetime.py)
    monkeypatch.setattr(executor, "SUSPEND_GRACE", 0.05)
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    cancelled: list[int] = []
    left: list[asyncio.Task[None]] = []
    passes = 0

    async def forever(n: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    @app.function(id="forgetting", trigger=TriggerEvent("go"))
    async def forgetting(ctx: Context) -> Any:
        nonlocal passes
        passes += 1
        left.append(asyncio.create_task(forever(passes), name=f"forgotten-{passes}"))
        paid = await ctx.step.wait_for_event("w", event="paid", timeout="1h")
        return paid is None

    caplog.set_level(logging.WARNING, logger="stepline")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output is True
    assert passes == 2
    await asyncio.sleep(0)  # a cancellation would be delivered at the next loop turn
    assert cancelled == []
    assert [task.done() for task in left] == [False, False]
    assert GRACE_SPENT in caplog.text
    assert "forgotten-1 (" in caplog.text
    assert "forever" in caplog.text
    assert "they keep running" in caplog.text
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    assert cancelled == [1, 2]


async def test_the_loops_task_factory_is_chained_while_a_pass_runs_and_given_back(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []
    during: list[object] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kwargs)

    @app.function(id="factory", trigger=TriggerEvent("go"))
    async def with_factory(ctx: Context) -> Any:
        during.append(asyncio.get_running_loop().get_task_factory())

        async def side() -> int:
            return await ctx.step.run("a", lambda: 1)

        return await asyncio.gather(side(), ctx.step.run("b", lambda: 2))

    assert loop.get_task_factory() is None
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == [1, 2]
    assert loop.get_task_factory() is None  # no pass runs: no factory left behind
    loop.set_task_factory(factory)
    try:
        async with make_engine() as t:
            run = await t.trigger(Event("go"))
        assert run.output == [1, 2]
        assert loop.get_task_factory() is factory  # given back
    finally:
        loop.set_task_factory(None)
    assert during[0] is not None and during[1] not in (None, factory)  # chained while it ran
    assert any(name.endswith("with_factory.<locals>.side") for name in made), made
