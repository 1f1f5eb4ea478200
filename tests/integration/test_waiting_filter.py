"""The runs list's "waiting on" filter (issue 9): ``App.runs_waiting`` lets the store keep, of
the newest runs of each status a kind allows, those whose queue row and workers allow it
("queued": due; "scheduled", "throttle": due later; a live worker serves the function), and
finds exactly the runs ``waiting_on`` names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _polling import until

import pgtest
from stepline import App, Context, Event, Throttle, TriggerEvent
from stepline.sdk.waiting import WAITING_KINDS
from stepline.testing import MockClock, TestEngine


async def test_each_kind_finds_the_runs_waiting_on_it(store_kind: str) -> None:
    app = App("waiting-app")
    release = asyncio.Event()

    @app.function(id="block", trigger=TriggerEvent("block"))
    async def block(ctx: Context) -> int:
        await ctx.step.run("hold", release.wait)
        return 1

    @app.function(id="slow", trigger=TriggerEvent("slow"), throttle=Throttle(1, "1h"))
    async def slow(ctx: Context) -> int:
        return 2

    @app.function(id="nap", trigger=TriggerEvent("nap"))
    async def nap(ctx: Context) -> int:
        await ctx.step.sleep("rest", "1h")
        return 3

    clock = MockClock(autojump=False)
    async with TestEngine(
        app, store=pgtest.engine_store(store_kind), clock=clock, concurrency=1
    ) as t:
        try:
            await t.send(Event("slow", {}))
            await until("the first throttled run to end", lambda: _ended(t, "slow"))
            await t.send([Event("slow", {}), Event("slow", {}), Event("nap", {})])
            await until("the nap to sleep", lambda: _with_status(t, "SLEEPING"))
            await t.send([Event("block", {}) for _ in range(3)])
            await until("a run to hold the worker", lambda: _with_status(t, "RUNNING"))
            clock.advance(1)  # the queued runs are a second overdue (not "due later")
            # (a worker on PostgreSQL may lease a queued run between two reads: compared at a
            # moment when nothing moved between them)
            await until("the filter to agree with waiting_on", lambda: _agree(app))
            # the store decided by the queue row: the queued runs' filter reads no throttled run,
            # the throttled runs' reads no queued one
            queued = {r.function_id for r in await app.runs_waiting("queued")}
            assert queued == {"block"}
            assert {r.function_id for r in await app.runs_waiting("throttle")} == {"slow"}
        finally:
            release.set()


async def _agree(app: App) -> bool:
    """Whether, for every kind, the runs ``runs_waiting`` keeps that wait on it are those
    ``waiting_on`` names among all runs, read before and after as the same."""
    before = await _kinds(app)
    assert {"queued", "running", "sleep", "throttle"} <= set(before.values())
    found = {}
    for kind in WAITING_KINDS:
        if kind != "worker":
            found[kind] = {r.run_id for r in await app.runs_waiting(kind)}
    if await _kinds(app) != before:
        return False
    for kind, run_ids in found.items():
        assert run_ids == {r for r, k in before.items() if k == kind}, kind
    return True


async def _kinds(app: App) -> dict[str, str]:
    every = await app.runs(limit=100, with_steps=False)
    return {run_id: w.kind for run_id, w in (await app.waiting_on(every)).items()}


async def _ended(t: TestEngine, function_id: str) -> bool:
    return any(r.done for r in await t.app.runs(function_id=function_id, with_steps=False))


async def _with_status(t: TestEngine, status: str) -> bool:
    return bool(await t.app.runs(status=status, with_steps=False))


async def test_the_runs_list_the_filter_and_the_reasons_are_one_read_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each read hops to a reader thread and back, a wait for a core on a busy machine: the
    # filter read the live workers, a window per status, then per 500 runs the queue states,
    # the paused functions and the live workers again (14 hops for the dashboard's page)
    app = App("hops-app")

    @app.function(id="nap", trigger=TriggerEvent("nap"))
    async def nap(ctx: Context) -> int:
        await ctx.step.sleep("rest", "1h")
        return 3

    async with TestEngine(app, store="sqlite", clock=MockClock(autojump=False)) as t:
        await t.send([Event("nap", {}) for _ in range(3)])
        await until("the naps to sleep", lambda: _sleeping(t, 3))
        engine = app.engine
        read = engine.read
        hops: list[str] = []
        this_test = asyncio.current_task()

        async def counted(fn: Any, *args: Any, **options: Any) -> Any:
            # only this test's reads: the worker's own (its timer's next_due_at) run beside it
            if asyncio.current_task() is this_test:
                hops.append(getattr(fn, "__qualname__", repr(fn)))
            return await read(fn, *args, **options)

        monkeypatch.setattr(engine, "read", counted)
        sleeping = await app.runs_waiting("sleep")
        assert len(sleeping) == 3 and len(hops) == 1, hops
        reasons = await app.waiting_on(sleeping)
        assert {w.kind for w in reasons.values()} == {"sleep"} and len(hops) == 2, hops
        # the runs list with steps: the live workers, the runs, their steps (three hops, each
        # also taking the GIL back and forth with a pass running beside it)
        listed = await app.runs(with_steps=True)
        assert [len(r.steps) for r in listed] == [1, 1, 1] and len(hops) == 3, hops


async def _sleeping(t: TestEngine, count: int) -> bool:
    return len([r for r in await t.runs() if r.status == "SLEEPING"]) == count
