"""What a user sees while a pass executes: the run RUNNING, its executing step with its start and
attempt, RUN_STARTED when the first pass began, history at the times things happened, and the
worker that ran each pass.

issue 6 "What a user sees", first bullet: a run showed QUEUED with 0 steps while its first 6 s
step ran, and SLEEPING during a step after a sleep; RUN_STARTED was written with the first
commit (after the first step), and STEP_COMPLETED carried the step's start time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pgtest
from stepline import App, Context, Event, Limits, Run, TriggerEvent
from stepline.testing import MockClock, TestEngine


async def poll_run(t: TestEngine, run_id: str, check: Callable[[Run], bool]) -> Run:
    deadline = time.monotonic() + 30
    while True:
        run = await t.app.get_run(run_id)
        assert run is not None
        if check(run):
            return run
        assert time.monotonic() < deadline, f"run {run_id}: {run}"
        await asyncio.sleep(0.005)  # real time: the poll interval; the deadline bounds it


async def test_a_run_is_running_with_its_step_visible_while_a_pass_executes(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 "What a user sees" (status RUNNING while a pass executes)
    gates = {"first": asyncio.Event(), "after-nap": asyncio.Event()}

    async def blocked(name: str) -> str:
        await gates[name].wait()
        return name

    @app.function(id="slow", trigger=TriggerEvent("go"))
    async def slow(ctx: Context) -> Any:
        first = await ctx.step.run("first", blocked, "first")
        await ctx.step.sleep("nap", "1h")
        return [first, await ctx.step.run("after-nap", blocked, "after-nap")]

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        try:
            [event_id] = await t.send(Event("go"))
            [queued] = await t.runs(event_id=event_id)
            # the first step executes: the run is RUNNING, started, by this worker
            run = await poll_run(t, queued.run_id, lambda r: bool(r.steps))
            assert (run.status, run.worker_id) == ("RUNNING", "test-worker")
            assert run.started_at is not None
            started = run.started_at
            [step] = run.steps
            assert (step.id, step.status, step.attempts, step.started_at) == (
                "first",
                "RUNNING",
                0,
                started,
            )
            history = await t.history(run.run_id)
            assert [(h.kind, h.worker_id) for h in history] == [
                ("RUN_QUEUED", None),
                ("RUN_STARTED", "test-worker"),
            ]
            assert history[1].at == started  # when the first pass began, not after its first step
            clock.advance(6)  # the step takes 6 s
            gates["first"].set()
            await t.wait_for_status(run.run_id, "SLEEPING")
            clock.advance(3600)
            assert t.worker is not None
            t.worker.wake()
            # a step after the sleep executes: RUNNING again, not SLEEPING
            run = await poll_run(t, run.run_id, lambda r: r.steps[-1].status == "RUNNING")
            assert run.status == "RUNNING"
            assert run.steps[-1].id == "after-nap"
            gates["after-nap"].set()
            done = await t.wait_for_run(run.run_id)
            history = await t.history(run.run_id)
        finally:  # a failed check must not leave the pass blocked (the worker's stop awaits it)
            for gate in gates.values():
                gate.set()
    assert done.output == ["first", "after-nap"]
    assert [h.kind for h in history].count("RUN_STARTED") == 1
    [first] = [h for h in history if h.kind == "STEP_COMPLETED" and h.step_id == "first"]
    # a step's STEP_COMPLETED is at its end, with its duration back to its start
    assert first.duration is not None
    assert first.at.timestamp() >= started.timestamp() + 6
    assert {h.worker_id for h in history if h.kind != "RUN_QUEUED"} == {"test-worker"}


async def test_a_run_that_ends_while_a_step_is_shown_running_keeps_no_running_step(
    store_kind: str, tmp_path: Path
) -> None:
    # issue 6 "What a user sees": a step shown RUNNING whose result never lands (the round went
    # over the run-state limit; the run was cancelled and the step failed) stayed RUNNING in an
    # ended run (test_limits::test_run_state_limit saw 4 steps where 3 were expected)
    limited = App("limited", limits=Limits(max_run_state_bytes=3000))
    gate = asyncio.Event()

    async def chunk(i: int) -> str:
        if i == 3:
            await gate.wait()
        return "y" * 900

    @limited.function(id="state", trigger=TriggerEvent("go"))
    async def state(ctx: Context) -> Any:
        for i in range(4):
            await ctx.step.run(f"chunk{i}", chunk, i)

    async with TestEngine(
        limited, store=pgtest.engine_store(store_kind), path=tmp_path / "s.db"
    ) as t:
        [event_id] = await t.send(Event("go"))
        [queued] = await t.runs(event_id=event_id)
        await poll_run(t, queued.run_id, lambda r: len(r.steps) == 4)  # chunk3 shown RUNNING
        gate.set()
        run = await t.wait_for_status(queued.run_id, "FAILED")
    assert run.error is not None
    assert run.error["limit"] == "run_state"
    assert [(s.id, s.status) for s in run.steps] == [
        ("chunk0", "COMPLETED"),
        ("chunk1", "COMPLETED"),
        ("chunk2", "COMPLETED"),
    ]


async def test_a_cancelled_run_whose_executing_step_fails_keeps_no_running_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 "What a user sees": see above; here the run is cancelled while its step executes
    # and the step then fails (a retryable error: no result to keep)
    gate = asyncio.Event()

    async def flaky() -> None:
        await gate.wait()
        raise RuntimeError("boom")

    @app.function(id="doomed", trigger=TriggerEvent("go"))
    async def doomed(ctx: Context) -> Any:
        await ctx.step.run("flaky", flaky)

    async with make_engine() as t:
        [event_id] = await t.send(Event("go"))
        [queued] = await t.runs(event_id=event_id)
        await poll_run(t, queued.run_id, lambda r: bool(r.steps))  # flaky shown RUNNING
        assert await t.app.cancel_run(queued.run_id)
        gate.set()
        await t.wait_for_status(queued.run_id, "CANCELLED")
        assert t.worker is not None
        deadline = time.monotonic() + 30
        while queued.run_id in t.worker.active:  # the pass ends once the step has failed
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)  # real time: the poll interval; the deadline bounds it
        run = await poll_run(t, queued.run_id, lambda r: True)
    assert [s.status for s in run.steps if s.status == "RUNNING"] == []
