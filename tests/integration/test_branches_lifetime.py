"""A pass's branches after the pass: a task still running is released, not cancelled (a
library's background task started lazily inside a function must outlive the pass), unless a
gather or TaskGroup whose joining task ended joins it (nobody will: cancelled); and the
joins of branches the pass recognizes, so that a function joining blocked branches suspends
without SUSPEND_GRACE."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine import executor
from stepline.testing import TestEngine

GRACE_SPENT = "suspending while tasks of the function still run"  # logged when it ran out


class Client:
    """A library client that starts its background task at first use (a connection keeper, a
    producer's sender loop, a cache refresher), as many asyncio libraries do lazily."""

    def __init__(self) -> None:
        self.keeper: asyncio.Task[None] | None = None
        self.beats = 0

    def use(self) -> None:
        if self.keeper is None:
            self.keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while True:  # its own timer: what a keep-alive loop awaits
            self.beats += 1
            await asyncio.sleep(0.01)  # real time: a keep-alive loop's own timer, what this models


async def test_a_librarys_background_task_started_in_a_function_outlives_the_pass(
    app: App, make_engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first use of a shared client happens inside a function body: its background task is
    # created in the function's context, so the pass tracks it; at the pass's end it is
    # released, not cancelled (b506f9a cancelled it STOP_GRACE after the pass)
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    client = Client()

    @app.function(id="uses-a-client", trigger=TriggerEvent("go"))
    async def uses_a_client(ctx: Context) -> Any:
        client.use()
        return await ctx.step.run("a", lambda: "a")

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        assert run.output == "a"
        # past STOP_GRACE (real seconds, 50 ms here), when b506f9a cancelled the tasks the pass
        # left running: the grace's timer, on this loop and due first, has fired by then
        await asyncio.sleep(0.2)  # real time, on purpose: STOP_GRACE is real time
        keeper = client.keeper
        assert keeper is not None
        assert not keeper.done(), "the client's background task was cancelled with the pass"
        beats = client.beats
        await asyncio.sleep(0.05)  # real time: the keeper's own timer (10 ms) fires again
        assert client.beats > beats
        keeper.cancel()


async def test_a_step_a_released_task_calls_after_its_pass_is_refused(
    app: App, make_engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a task left running after its function returned calls a step: the ended pass refuses it
    # (it raises in that task), nothing is recorded, and the run stays completed
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    go_on = asyncio.Event()
    outcome: list[BaseException | str] = []

    @app.function(id="late-step", trigger=TriggerEvent("go"))
    async def late_step(ctx: Context) -> Any:
        async def late() -> None:
            await go_on.wait()
            try:
                outcome.append(await ctx.step.run("late", lambda: "late"))
            except BaseException as exc:
                outcome.append(exc)

        asyncio.create_task(late())  # noqa: RUF006 (left running, on purpose)
        return await ctx.step.run("a", lambda: "a")

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        assert run.output == "a"
        go_on.set()
        # until the late task has called its step (not a count of loop turns: 20 turns were
        # not enough on PostgreSQL at load 18, Python 3.13, when the pass's end waited on I/O)
        await until("the late task's step call to end", lambda: outcome)
        assert len(outcome) == 1
        assert isinstance(outcome[0], BaseException), outcome
        again = await t.wait_for_run(run.run_id)
        assert again.status == "COMPLETED"
        assert again.output == "a"


async def _within_an_hour(poller: Awaitable[str]) -> str:
    # real seconds, never reached; on Python 3.11 wait_for runs the poller in a task of its own
    return await asyncio.wait_for(poller, 3600)


async def _as_is(poller: Awaitable[str]) -> str:
    return await poller


@pytest.mark.parametrize("wrap", [_as_is, _within_an_hour], ids=["as-is", "wait_for"])
async def test_a_gathered_sibling_still_working_when_the_pass_ends_is_cancelled(
    app: App,
    make_engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    wrap: Callable[[Awaitable[str]], Awaitable[str]],
) -> None:
    # gather(step.wait_for_event(...), poll()): the step's call ends the pass (Suspended), the
    # gather hands that to the function at once and never cancels the poller, its other child.
    # Released with the pass, the poller ran on after every suspension and each replay started
    # another one (review N1). Nobody can join it any more: it is cancelled. A task the
    # function created and did not join (a library's keep-alive) is still released. Polled
    # through wait_for, the poller is wait_for's own task (nobody else holds it): cancelled too.
    monkeypatch.setattr(executor, "SUSPEND_GRACE", 0.05)  # the poller keeps the pass working
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    passes = 0
    pollers: list[asyncio.Task[Any]] = []
    detached: list[asyncio.Task[Any]] = []

    async def poll(n: int) -> str:
        pollers.append(asyncio.current_task())  # type: ignore[arg-type]
        if n == 1:
            await asyncio.Event().wait()  # polls something, forever
        return "polled"

    async def keep_alive() -> None:
        await asyncio.Event().wait()

    @app.function(id="polling", trigger=TriggerEvent("go"))
    async def polling(ctx: Context) -> Any:
        nonlocal passes
        passes += 1
        if passes == 1:
            detached.append(asyncio.create_task(keep_alive()))
        paid, polled = await asyncio.gather(
            ctx.step.wait_for_event("w", event="paid", timeout="1h"), wrap(poll(passes))
        )
        return [paid, polled]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))  # the wait times out an hour later (virtual)
    assert run.output == [None, "polled"]
    assert passes == 2
    first = pollers[0]
    assert first.cancelled(), "the first pass's poller runs on"
    [keeper] = detached
    assert not keeper.done()
    keeper.cancel()


async def _await_directly(task: asyncio.Task[str]) -> str:
    return await task


async def _await_through_gather(task: asyncio.Task[str]) -> str:
    [value] = await asyncio.gather(task)
    return value


async def _await_through_wait_for(task: asyncio.Task[str]) -> str:
    # on Python 3.11 wait_for awaits a future of its own and, cancelled, cancels the task
    return await asyncio.wait_for(task, 3600)  # real seconds, never reached: the gate opens


async def _await_through_timeout(task: asyncio.Task[str]) -> str:
    async with asyncio.timeout(3600):  # real seconds, never reached: the gate opens
        return await task


async def _await_through_wait_for_of_a_coroutine(task: asyncio.Task[str]) -> str:
    # wait_for's own task (3.11) awaits the shared one: cancelling it would cancel that
    return await asyncio.wait_for(_await_directly(task), 3600)  # real seconds, never reached


@pytest.mark.parametrize(
    "await_shared",
    [
        _await_directly,
        _await_through_gather,
        _await_through_wait_for,
        _await_through_wait_for_of_a_coroutine,
        _await_through_timeout,
    ],
    ids=["task", "gather", "wait_for", "wait_for-coroutine", "timeout"],
)
async def test_a_shared_task_an_orphaned_gathered_branch_awaits_outlives_the_pass(
    app: App,
    make_engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    await_shared: Callable[[asyncio.Task[str]], Awaitable[str]],
) -> None:
    # a gathered branch still running when the pass ends awaits a task shared beyond the pass
    # (a "single flight" token refresh a library caches in a global, awaited by every caller):
    # cancelling the branch would cancel the refresh with it (Task.cancel cancels what it
    # awaits), and every later pass, or other run, awaiting it got CancelledError (review F2).
    # The branch is released instead, and the refresh runs to its end.
    monkeypatch.setattr(executor, "SUSPEND_GRACE", 0.05)
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    shared: dict[str, asyncio.Task[str]] = {}
    gate = asyncio.Event()
    seen: list[bool] = []

    async def refresh() -> str:
        await gate.wait()  # a request to an identity provider
        return "token"

    async def get_token() -> str:
        if "t" not in shared:
            shared["t"] = asyncio.get_running_loop().create_task(refresh())
        return await await_shared(shared["t"])

    @app.function(id="tokened", trigger=TriggerEvent("go"))
    async def tokened(ctx: Context) -> Any:
        if "t" in shared:  # a later pass: the refresh the first one started
            seen.append(shared["t"].cancelled())
            gate.set()
            if shared["t"].cancelled():
                del shared["t"]
        paid, token = await asyncio.gather(
            ctx.step.wait_for_event("w", event="paid", timeout="1h"), get_token()
        )
        return [paid, token]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))  # the wait times out an hour later (virtual)
    assert run.output == [None, "token"]
    assert seen == [False], "the shared refresh was cancelled with the first pass"


async def _started_directly(start: Callable[[], asyncio.Task[str]]) -> asyncio.Task[str]:
    return start()


async def _started_inside_wait_for(start: Callable[[], asyncio.Task[str]]) -> asyncio.Task[str]:
    async def starting() -> asyncio.Task[str]:
        return start()

    # from Python 3.12 on wait_for awaits this coroutine itself: the task is made 2 frames
    # below wait_for's, yet by the function, not by wait_for (review R2 of the twelfth stop)
    return await asyncio.wait_for(starting(), 3600)  # real seconds, never reached


@pytest.mark.parametrize(
    "started", [_started_directly, _started_inside_wait_for], ids=["directly", "inside-wait_for"]
)
async def test_a_task_the_function_caches_and_gathers_outlives_the_pass(
    app: App,
    make_engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    started: Callable[[Callable[[], asyncio.Task[str]]], Awaitable[asyncio.Task[str]]],
) -> None:
    # a warm-up task the function starts once, keeps in a module-level cache for every pass and
    # gathers with a wait: a task the function made and passed to gather may be held elsewhere,
    # so it is released with the pass, never cancelled (only the tasks gather made from the
    # coroutines it was given are: nobody else holds those) (review F2)
    monkeypatch.setattr(executor, "SUSPEND_GRACE", 0.05)
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    cache: dict[str, asyncio.Task[str]] = {}
    gate = asyncio.Event()
    seen: list[bool] = []

    async def warm_up() -> str:
        await gate.wait()  # loads a model, fills a connection pool...
        return "warm"

    @app.function(id="warmed", trigger=TriggerEvent("go"))
    async def warmed(ctx: Context) -> Any:
        if "t" in cache:
            seen.append(cache["t"].cancelled())
            gate.set()
            if cache["t"].cancelled():
                del cache["t"]
        if "t" not in cache:
            cache["t"] = await started(lambda: asyncio.get_running_loop().create_task(warm_up()))
        paid, state = await asyncio.gather(
            ctx.step.wait_for_event("w", event="paid", timeout="1h"), cache["t"]
        )
        return [paid, state]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == [None, "warm"]
    assert seen == [False], "the cached task was cancelled with the first pass"


def _chaining_factory(previous: Any, frames: int) -> Callable[..., asyncio.Future[Any]]:
    """A task factory chaining to ``previous`` (the pass's hook) through ``frames`` frames of
    its own, as a tracing library installing its factory lazily does."""

    def made(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if previous is None:
            return asyncio.Task(coro, loop=loop, **kwargs)
        return previous(loop, coro, **kwargs)

    def wrapping(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        return made(loop, coro, **kwargs)

    return wrapping if frames == 2 else made


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="from 3.12 on wait_for makes no task")
@pytest.mark.parametrize("frames", [1, 2], ids=["one-frame", "two-frames"])
async def test_a_wait_for_poller_is_cancelled_under_a_factory_chained_over_the_pass(
    app: App,
    make_engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    frames: int,
) -> None:
    # Python 3.11's wait_for makes a task of the coroutine it is given, which nothing else
    # holds: gathered beside a wait the pass suspends on, it is cancelled with the pass. A
    # factory set over the pass's hook while it runs, adding two frames before it chains, put
    # wait_for out of the 5 frames looked at: the poller ran on after its pass (review R2 of
    # the twelfth stop)
    monkeypatch.setattr(executor, "SUSPEND_GRACE", 0.05)
    monkeypatch.setattr(executor, "STOP_GRACE", 0.05)
    loop = asyncio.get_running_loop()
    passes = 0
    pollers: list[asyncio.Task[Any]] = []

    async def poll(n: int) -> str:
        task = asyncio.current_task()
        assert task is not None
        pollers.append(task)
        if n == 1:
            await asyncio.Event().wait()  # polls something, forever
        return "polled"

    @app.function(id="polling", trigger=TriggerEvent("go"))
    async def polling(ctx: Context) -> Any:
        nonlocal passes
        passes += 1
        if passes == 1:  # installed at first use, over the pass's hook
            loop.set_task_factory(_chaining_factory(loop.get_task_factory(), frames))
        paid, polled = await asyncio.gather(
            ctx.step.wait_for_event("w", event="paid", timeout="1h"),
            asyncio.wait_for(poll(passes), 3600),  # real seconds, never reached
        )
        return [paid, polled]

    try:
        async with make_engine() as t:
            run = await t.trigger(Event("go"))
        assert run.output == [None, "polled"]
        assert pollers[0].cancelled(), "the first pass's wait_for poller ran on after its pass"
    finally:
        loop.set_task_factory(None)
        for task in pollers:
            task.cancel()


async def _join_anyio(branches: list[Callable[[], Awaitable[Any]]]) -> None:
    import anyio

    async with anyio.create_task_group() as group:
        for branch in branches:
            group.start_soon(branch)


async def _join_shielded(branches: list[Callable[[], Awaitable[Any]]]) -> None:
    await asyncio.shield(asyncio.gather(*(branch() for branch in branches)))


async def _join_shielded_task(branches: list[Callable[[], Awaitable[Any]]]) -> None:
    async def both() -> None:
        for branch in branches:  # one after the other, in a task of its own
            await branch()

    await asyncio.shield(asyncio.ensure_future(both()))


@pytest.mark.parametrize(
    "join",
    [_join_anyio, _join_shielded, _join_shielded_task],
    ids=["anyio", "shield-gather", "shield-task"],
)
async def test_a_function_joining_its_branches_otherwise_suspends_without_the_grace(
    join: Callable[[list[Callable[[], Awaitable[Any]]]], Awaitable[None]],
    app: App,
    make_engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # anyio's task group (asyncio backend) waits in its __aexit__ on a plain future its tasks
    # complete, asyncio.shield on a plain future a done callback of its task (or of the gather
    # of its tasks) completes: joins, seen as ones; with every branch blocked on a step the pass
    # suspends at once (SUSPEND_GRACE, shortened here, is not spent: no warning)
    monkeypatch.setattr(executor, "SUSPEND_GRACE", 0.5)
    found: dict[str, Any] = {}

    @app.function(id="joined", trigger=TriggerEvent("go"))
    async def joined(ctx: Context) -> Any:
        async def wait() -> None:
            found["w"] = await ctx.step.wait_for_event("w", event="paid", timeout="1h")

        async def side() -> None:
            found["a"] = await ctx.step.run("a", lambda: "a")

        await join([wait, side])
        return found["a"]

    caplog.set_level(logging.WARNING, logger="stepline")
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        assert run.output == "a"
    assert GRACE_SPENT not in caplog.text  # it settled: no task left working
