"""Virtual time never moves under a pass in flight.

``MockClock`` jumps to the worker's next deadline once the worker has been idle for
``autojump_threshold`` real seconds. The worker said whether it was idle when it began to wait
(``idle=not self.active``), but a run ``send`` hands over to it (leased in the event's own
transaction) starts its pass without waking it: the clock then jumped under that pass, past its
lease, whose next commit was refused, and the run was entered again (``test_poison_passes.py``
saw ``entered == [1, 1]`` under load on PostgreSQL, where a worker's next deadline can be the
expiry of the lease just taken). Idleness is now asked again when the clock would jump.

No pass is not enough: a ``send`` leases the runs it starts for the worker inside its own write
and hands them over once that write is done. While the write is in flight no pass runs; the
clock jumped (to a sleeping run's hour) and the lease handed over had expired before its pass
began: the run was entered twice (review F4). A write that may hand runs over counts as work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.clock import Idle
from stepline.engine._ingest_batch import IngestBatcher
from stepline.testing import MockClock, TestEngine


class _CuedWake(asyncio.Event):
    """A worker's wake-up as ``MockClock`` sees it during an idle wait: set when the worker's
    is, and its wait raises ``TimeoutError`` (the autojump threshold passed) when the test
    gives the cue."""

    def __init__(self, wake: asyncio.Event, cue: asyncio.Event) -> None:
        super().__init__()
        self._wake, self._cue = wake, cue

    def is_set(self) -> bool:
        return self._wake.is_set()

    async def wait(self) -> bool:
        waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._cue.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self._wake.is_set():
            return True
        self._cue.clear()  # once
        raise TimeoutError


class _ThresholdOnCue(MockClock):
    """A MockClock whose autojump threshold passes when the test says (``cue``), not after real
    time, so that the test acts inside it; ``idle_wait`` is set while the worker waits idle
    with a deadline."""

    def __init__(self) -> None:
        super().__init__(autojump_threshold=3600.0)  # never reached: the cue ends it
        self.idle_wait = asyncio.Event()
        self.cue = asyncio.Event()

    async def sleep_until(
        self, deadline: float | None, wake: asyncio.Event, *, idle: Idle = False
    ) -> None:
        if deadline is None or not (idle() if callable(idle) else idle):
            await super().sleep_until(deadline, wake, idle=idle)
            return
        self.idle_wait.set()
        try:
            await super().sleep_until(deadline, _CuedWake(wake, self.cue), idle=idle)
        finally:
            self.idle_wait.clear()


def _register_sleeper(app: App) -> None:
    @app.function(id="sleeper", trigger=TriggerEvent("nap"))
    async def sleeper(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")  # the worker's next deadline: an hour on
        return "woke"


async def _idle_an_hour_ahead(t: TestEngine, clock: _ThresholdOnCue) -> float:
    """Start the sleeper and return the clock's time once the worker waits idle, an hour's
    jump ahead."""
    [nap] = await t.send(Event("nap"))
    [napping] = await t.runs(event_id=nap)
    await t.wait_for_status(napping.run_id, "SLEEPING")
    await asyncio.wait_for(clock.idle_wait.wait(), 30)
    return clock.now()


async def _threshold_passes(clock: _ThresholdOnCue) -> None:
    """Give the cue, and return once the clock's wait has seen it (a few turns)."""
    clock.cue.set()
    while clock.cue.is_set() and clock.idle_wait.is_set():
        # real time: a poll of the clock's wait (a few turns of the loop)
        await asyncio.sleep(0.001)


async def test_the_clock_does_not_jump_under_a_pass_that_send_handed_over(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    entered: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    _register_sleeper(app)

    @app.function(id="holder", trigger=TriggerEvent("go"))
    async def holder(ctx: Context) -> Any:
        entered.append("go")

        async def hold() -> None:
            started.set()
            await release.wait()  # the pass stays in flight while the threshold passes

        await ctx.step.run("hold", hold)
        return "held"

    clock = _ThresholdOnCue()
    async with make_engine(clock=clock) as t:
        before = await _idle_an_hour_ahead(t, clock)
        [go] = await t.send(Event("go"))  # handed over to the worker: no wake-up
        await asyncio.wait_for(started.wait(), 30)
        await _threshold_passes(clock)  # now, the pass in flight
        moved = clock.now() - before
        release.set()
        [going] = await t.runs(event_id=go)
        run = await t.wait_for_run(going.run_id)
    assert moved == 0
    assert (run.status, entered) == ("COMPLETED", ["go"])


async def test_the_clock_does_not_jump_while_a_send_that_hands_runs_over_is_written(
    app: App,
    make_engine: Callable[..., TestEngine],
    store_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the send's write is held (on the writer thread in its ingest, or, on PostgreSQL, in its
    # commit on the loop) while the test gives the threshold's cue: the worker runs no pass
    # then, and the runs the write leases for it are not handed over yet
    entered: list[str] = []
    in_write, go_on = threading.Event(), threading.Event()
    armed: list[asyncio.Event] = []
    ingest_group = IngestBatcher._ingest_group

    def held(self: IngestBatcher, tx: Any, group: Any) -> Any:
        on_loop = threading.current_thread() is threading.main_thread()
        if not on_loop and any(i.event.name == "go" for s in group.senders for i in s.items):
            in_write.set()
            go_on.wait(30)
        return ingest_group(self, tx, group)

    monkeypatch.setattr(IngestBatcher, "_ingest_group", held)
    if store_kind.startswith("postgres"):
        from stepline.store.postgres import PostgresStore

        commit_on_loop = PostgresStore.commit_on_loop

        async def held_on_loop(self: PostgresStore, jobs: Any) -> Any:
            if armed:  # the send's write: the worker is idle, it writes nothing meanwhile
                in_write.set()
                await armed[0].wait()
            return await commit_on_loop(self, jobs)

        monkeypatch.setattr(PostgresStore, "commit_on_loop", held_on_loop)

    _register_sleeper(app)

    @app.function(id="goer", trigger=TriggerEvent("go"))
    async def goer(ctx: Context) -> Any:
        entered.append("go")
        await ctx.step.run("one", lambda: 1)
        return "done"

    clock = _ThresholdOnCue()
    async with make_engine(clock=clock) as t:
        before = await _idle_an_hour_ahead(t, clock)
        armed.append(asyncio.Event())
        sending = asyncio.ensure_future(t.send(Event("go")))  # leases its run for the worker
        await asyncio.wait_for(asyncio.to_thread(in_write.wait, 30), 35)
        await _threshold_passes(clock)  # now, the send's write in flight
        moved = clock.now() - before
        go_on.set()
        armed.pop().set()
        [go] = await sending
        [going] = await t.runs(event_id=go)
        run = await t.wait_for_run(going.run_id)
    assert moved == 0
    assert (run.status, entered) == ("COMPLETED", ["go"])


class _Worker:
    """A worker as the clock sees it: whether it is idle, and how often it was asked."""

    def __init__(self, idle: bool) -> None:
        self.idle, self.asked = idle, 0

    def at_rest(self) -> bool:
        self.asked += 1
        return self.idle


async def test_the_clock_does_not_jump_while_another_worker_on_it_runs_a_pass() -> None:
    # two workers on one clock (two apps, test_apps.py): each answered "idle" for itself only,
    # so an idle one's jump could land under the other's pass
    clock = MockClock(autojump_threshold=0.001)
    start = clock.now()
    busy, idle = _Worker(False), _Worker(True)
    await clock.sleep_until(start, asyncio.Event(), idle=busy.at_rest)  # it waited here once
    sleeping = asyncio.ensure_future(
        clock.sleep_until(start + 3600, asyncio.Event(), idle=idle.at_rest)
    )
    while not sleeping.done() and busy.asked < 2:  # asked when the idle one would jump, twice
        # real time: a poll (a few turns of the loop) under the test's timeout
        await asyncio.sleep(0.001)
    assert clock.now() == start, "the clock jumped under the other worker's pass"
    busy.idle = True
    await asyncio.wait_for(sleeping, 30)  # both idle: it jumps
    assert clock.now() == start + 3600


async def test_a_send_whose_after_ingest_raises_still_hands_its_runs_over(
    app: App, make_engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``Engine.after_ingest`` raising before it handed the runs over (here waking another
    # app's engine: its loop closed between the check and the call) left the worker's count of
    # writes in flight raised, so MockClock never jumped again, and the run the send leased
    # for it without a pass until its lease expired (which a stopped clock never reaches)
    import stepline.engine.engine as engine_module

    raised: list[BaseException] = []
    handed_over = engine_module.handed_over

    def closed_loop_once(results: Any) -> None:
        if not raised:
            raised.append(RuntimeError("Event loop is closed"))
            raise raised[0]
        handed_over(results)

    def reported(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("exception") is not raised[0]:
            loop.default_exception_handler(context)

    @app.function(id="napper", trigger=TriggerEvent("go"))
    async def napper(ctx: Context) -> Any:
        await ctx.step.run("one", lambda: 1)
        await ctx.step.sleep("nap", "1h")  # the clock must jump to finish it
        return "woke"

    async with make_engine() as t:
        assert t.worker is not None
        await t.worker.ready.wait()
        asyncio.get_running_loop().set_exception_handler(reported)
        monkeypatch.setattr(engine_module, "handed_over", closed_loop_once)
        [go] = await t.send(Event("go"))  # its run leased for the worker in the send's write
        [going] = await t.runs(event_id=go)
        run = await t.wait_for_run(going.run_id, timeout=20)
        assert t.worker._handovers == 0
    assert raised, "the send never reached after_ingest"
    assert (run.status, run.output) == ("COMPLETED", "woke")


async def test_a_send_whose_write_cannot_be_submitted_fails_and_keeps_the_clock_jumping(
    app: App, make_engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the send's batch raised the worker's count of writes in flight before it submitted its
    # job; an error of submit other than the closed writer's RuntimeError reached nobody: the
    # senders' futures were never settled (the send hung) and the count stayed raised
    @app.function(id="napper", trigger=TriggerEvent("go"))
    async def napper(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")  # the clock must jump to finish it
        return "woke"

    async with make_engine() as t:
        assert t.worker is not None
        await t.worker.ready.wait()
        writer = t.app.engine.writer
        submit = writer.submit
        refused = MemoryError("the job could not be queued")

        def refusing_once(job: Any, *_: Any, **__: Any) -> Any:
            monkeypatch.setattr(writer, "submit", submit)
            raise refused

        monkeypatch.setattr(writer, "submit", refusing_once)
        with pytest.raises(MemoryError) as caught:
            await asyncio.wait_for(t.send(Event("go")), 20)  # a hang guard, not a timing
        assert caught.value is refused
        assert t.worker._handovers == 0
        [go] = await t.send(Event("go"))
        [going] = await t.runs(event_id=go)
        run = await t.wait_for_run(going.run_id, timeout=20)
    assert (run.status, run.output) == ("COMPLETED", "woke")
