"""Virtual time never moves under a pass in flight.

``MockClock`` jumps to the worker's next deadline once the worker has been idle for
``autojump_threshold`` real seconds. The worker said whether it was idle when it began to wait
(``idle=not self.active``), but a run ``send`` hands over to it (leased in the event's own
transaction) starts its pass without waking it: the clock then jumped under that pass, past its
lease, whose next commit was refused, and the run was entered again (``test_poison_passes.py``
saw ``entered == [1, 1]`` under load on PostgreSQL, where a worker's next deadline can be the
expiry of the lease just taken). Idleness is now asked again when the clock would jump.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, TriggerEvent
from stepline.clock import Idle
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


async def test_the_clock_does_not_jump_under_a_pass_that_send_handed_over(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    entered: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    @app.function(id="sleeper", trigger=TriggerEvent("nap"))
    async def sleeper(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")  # the worker's next deadline: an hour on
        return "woke"

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
        [nap] = await t.send(Event("nap"))
        [napping] = await t.runs(event_id=nap)
        await t.wait_for_status(napping.run_id, "SLEEPING")
        await asyncio.wait_for(clock.idle_wait.wait(), 30)  # idle, an hour's jump ahead
        before = clock.now()
        [go] = await t.send(Event("go"))  # handed over to the worker: no wake-up
        await asyncio.wait_for(started.wait(), 30)
        clock.cue.set()  # the threshold passes now, the pass in flight
        while clock.cue.is_set() and clock.idle_wait.is_set():
            await asyncio.sleep(0.001)  # until the clock's wait has seen it (a few turns)
        moved = clock.now() - before
        release.set()
        [going] = await t.runs(event_id=go)
        run = await t.wait_for_run(going.run_id)
    assert moved == 0
    assert (run.status, entered) == ("COMPLETED", ["go"])
