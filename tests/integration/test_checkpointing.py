"""Checkpointing: step results committed in groups, flushed before anything else happens, and
long passes yielding back to the queue."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from _polling import until
from tests.integration._commit_hook import CommitPass, hook_commit_pass

from stepline import (
    App,
    Checkpointing,
    ConfigError,
    Context,
    Event,
    NonRetriableError,
    StepError,
    SyncContext,
    TriggerEvent,
)
from stepline.store.interface import LoopCommits, WouldBlock
from stepline.testing import MockClock, TestEngine


def _steps(count: int) -> Callable[[Context], Any]:
    async def body(ctx: Context) -> Any:
        return [await ctx.step.run(f"s{i}", lambda i=i: i) for i in range(count)]

    return body


async def _commits_for(
    app: App, make_engine: Callable[..., TestEngine], fn_id: str, refuse_on_loop: bool = False
) -> int:
    """How many pass commits the run of ``fn_id`` made (counted at the store, each once: a
    commit whose jobs the writer ran again is the same ``commit`` object). ``refuse_on_loop``:
    every loop commit of the store (a store that has them) runs its jobs, then refuses
    (``WouldBlock``), as one that needed a round trip before its commit does."""
    made: list[Any] = []  # kept alive: identity is the commit's
    async with make_engine() as t:

        def counting(commit_pass: CommitPass) -> CommitPass:
            def counted(commit: Any, now: float, matcher: Any) -> Any:
                if not any(seen is commit for seen in made):
                    made.append(commit)
                return commit_pass(commit, now, matcher)

            return counted

        store = t.app.engine.store
        hook_commit_pass(store, counting)
        if refuse_on_loop:
            assert isinstance(store, LoopCommits), "only a store that commits on its loop refuses"
            _refuse_loop_commits(store)
        run = await t.trigger(Event(fn_id))
        assert run.output == list(range(9))
        return sum(1 for commit in made if commit.run_id == run.run_id)


def _refuse_loop_commits(store: LoopCommits) -> None:
    """Every loop commit of ``store`` runs its jobs, then refuses: nothing sent (the writer's
    thread makes it)."""
    commit_on_loop = store.commit_on_loop

    async def refusing(jobs: Sequence[Callable[[Any], Any]]) -> list[Any]:
        def then_refuse(tx: Any) -> Any:
            for job in jobs:
                job(tx)
            raise WouldBlock("refused by the test after its jobs ran")

        return await commit_on_loop([then_refuse])

    store.commit_on_loop = refusing  # type: ignore[method-assign]


async def test_buffered_steps_commit_in_groups(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    app.function(id="each", trigger=TriggerEvent("each"))(_steps(9))
    app.function(
        id="grouped",
        trigger=TriggerEvent("grouped"),
        checkpointing=Checkpointing(buffered_steps=3),
    )(_steps(9))
    assert await _commits_for(app, make_engine, "each") == 10  # 9 steps, then the end
    assert await _commits_for(app, make_engine, "grouped") == 4  # 3 groups of 3, then the end


@pytest.mark.parametrize("store_kind", ["postgres"], indirect=True)  # commits on its loop
async def test_a_pass_commit_the_store_refused_on_the_loop_and_made_again_counts_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    """A loop commit's jobs may run again on the writer's thread (``WouldBlock``: nothing sent,
    the writer's contract): the count is of commits made, not of ``commit_pass`` calls (a gate
    at load 13 counted 11 for the 9 steps of "each")."""
    app.function(id="each", trigger=TriggerEvent("each"))(_steps(9))
    assert await _commits_for(app, make_engine, "each", refuse_on_loop=True) == 10


async def test_a_failing_step_flushes_the_group_first(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="flush",
        trigger=TriggerEvent("go"),
        checkpointing=Checkpointing(buffered_steps=10, max_interval="1h"),
    )
    async def flush(ctx: Context) -> Any:
        await ctx.step.run("a", lambda: "a")
        await ctx.step.run("b", lambda: "b")

        def broken() -> None:
            raise NonRetriableError("no")

        try:
            await ctx.step.run("c", broken)
        except StepError:
            pass
        raise NonRetriableError("give up")

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert [(s.id, s.status) for s in run.steps] == [
        ("a", "COMPLETED"),
        ("b", "COMPLETED"),
        ("c", "FAILED"),
    ]


async def test_max_runtime_yields_the_pass_and_the_run_completes(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    clock = MockClock()
    calls: dict[str, int] = {}

    @app.function(
        id="long",
        trigger=TriggerEvent("go"),
        checkpointing=Checkpointing(max_runtime="25s"),
    )
    async def long(ctx: Context) -> Any:
        out = []
        for i in range(8):

            def work(i: int = i) -> int:
                calls[f"s{i}"] = calls.get(f"s{i}", 0) + 1
                clock.advance(10)  # each step takes ten seconds
                return i

            out.append(await ctx.step.run(f"s{i}", work))
        return out

    async with make_engine(clock=clock) as t:
        run = await t.trigger(Event("go"))
        history = [h.kind for h in await t.history(run.run_id)]
    assert run.output == list(range(8))
    assert set(calls.values()) == {1}  # every step ran once across the passes
    assert history.count("PASS_YIELDED") == 2  # 3 steps of 10 s fit in each 25 s pass


async def test_a_yielded_pass_is_continued_at_once_while_its_function_unwinds(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # wakeups: a yield commits the run due now and releases its lease, then waits for the
    # function to unwind; the worker's lease attempt in that window took the run and dropped
    # that lease (its previous pass was still active here): no pass until the lease expired
    clock = MockClock(autojump=False)
    unwinding = threading.Event()  # the function's finally: block has begun
    release = threading.Event()

    async def first() -> int:
        clock.advance(30)  # the step outlasts max_runtime: the pass yields after it
        return 1

    async def second() -> int:
        return 2

    @app.function(
        id="long", trigger=TriggerEvent("go"), checkpointing=Checkpointing(max_runtime="25s")
    )
    def long(ctx: SyncContext) -> Any:
        try:
            return [ctx.step.run("first", first), ctx.step.run("second", second)]
        finally:
            if not release.is_set():
                unwinding.set()
                release.wait(30)  # real time: bounds the test if it is never released

    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        await until("the yielded pass to be unwinding", unwinding.is_set)
        await t.tick()  # the worker looked for due work while the old pass is still active
        release.set()
        done = await t.wait_for_run(run.run_id, timeout=10)
        history = [h.kind for h in await t.history(run.run_id)]
    assert done.output == [1, 2]
    assert history.count("PASS_YIELDED") == 1


def test_invalid_checkpointing_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"Checkpointing\.buffered_steps"):
        Checkpointing(buffered_steps=0)
    with pytest.raises(ConfigError, match=r"Checkpointing\.max_interval"):
        Checkpointing(max_interval="soon")


@pytest.mark.parametrize("where", ["outside a step", "in a long step"])
async def test_max_interval_commits_a_buffered_group_on_a_timer(
    app: App, make_engine: Callable[..., TestEngine], where: str
) -> None:
    # issue 6 item 6: max_interval was only looked at on the next step boundary, so a group
    # stayed uncommitted for as long as the function worked outside steps (or in a long step)
    ran_a = threading.Event()
    release = threading.Event()

    def long_body() -> int:
        release.wait(30)
        return 2

    @app.function(
        id="slow",
        trigger=TriggerEvent("go"),
        checkpointing=Checkpointing(buffered_steps=10, max_interval="1s"),
    )
    async def slow(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: ran_a.set() or 1)
        if where == "outside a step":
            await asyncio.to_thread(release.wait, 30)  # work outside any step
            b = await ctx.step.run("b", lambda: 2)
        else:
            b = await ctx.step.run("b", long_body)
        return a + b

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        try:
            await asyncio.to_thread(ran_a.wait, 30)
            clock.advance(2)  # past max_interval while the function is busy
            deadline = time.monotonic() + 20
            while True:
                steps = {s.id: s.status for s in (await t.app.get_run(run.run_id)).steps}  # type: ignore[union-attr]
                if steps.get("a") == "COMPLETED":
                    break
                assert time.monotonic() < deadline, f"step a never committed: {steps}"
                await asyncio.sleep(0.005)  # real time: the poll interval; the deadline bounds it
        finally:
            release.set()
        assert (await t.wait_for_run(run.run_id)).output == 3
