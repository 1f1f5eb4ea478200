"""A pass ends whatever the function does once its run is cancelled or its lease is lost: every
step call it still makes (in ``finally:``, in ``except BaseException``) is refused, every pending
step future is released and a sync function's thread is unblocked (issue 6 item 4)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Context, Event, SyncContext, TriggerEvent
from stepline.store.interface import StoreTx
from stepline.store.records import Lease
from stepline.testing import MockClock, TestEngine

DEADLINE = 20.0  # real seconds; a hang fails here (or at the pytest timeout), never a timing race


async def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.005)  # real time: the poll interval; the deadline bounds it


class Gate:
    """A step body that blocks (in its thread) on its first call until the test opens it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.calls = 0

    def body(self) -> str:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.opened.wait(DEADLINE)
        return "done"


def _register(app: App, gate: Gate, ended: list[str], *, sync: bool) -> None:
    if sync:

        @app.function(id="job", trigger=TriggerEvent("go"), retries=0)
        def job_sync(ctx: SyncContext) -> Any:
            try:
                return ctx.step.run("long", gate.body)
            finally:
                try:
                    ctx.step.run("cleanup", lambda: "cleaned")
                except BaseException as exc:
                    ended.append(type(exc).__name__)
                    raise
                ended.append("cleanup returned")

    else:

        @app.function(id="job", trigger=TriggerEvent("go"), retries=0)
        async def job_async(ctx: Context) -> Any:
            try:
                return await ctx.step.run("long", gate.body)
            finally:
                try:
                    await ctx.step.run("cleanup", lambda: "cleaned")
                except BaseException as exc:
                    ended.append(type(exc).__name__)
                    raise
                ended.append("cleanup returned")


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_step_in_finally_after_cancel_ends_the_pass(
    app: App, make_engine: Callable[..., TestEngine], sync: bool
) -> None:
    # issue 6 item 4: cancelled mid-step, the function awaits a step in `finally:`
    gate, ended = Gate(), []
    _register(app, gate, ended, sync=sync)
    t = make_engine(clock=MockClock(autojump=False))
    await t.__aenter__()
    try:
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        await asyncio.to_thread(gate.entered.wait, DEADLINE)
        assert await t.app.cancel_run(run.run_id)
        gate.opened.set()
        await _eventually(lambda: bool(ended), "the step in `finally:` returned or raised")
        assert ended == ["Suspended"]  # refused: the run is cancelled, no new step may start
        await _eventually(lambda: not t.worker.active, "the pass ended")  # type: ignore[union-attr]
        after = await t.app.get_run(run.run_id)
        assert after is not None and after.status == "CANCELLED"
        assert "cleanup" not in {s.id for s in after.steps}
    finally:
        gate.opened.set()
        await asyncio.wait_for(t.__aexit__(None, None, None), DEADLINE)  # a graceful stop ends


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_step_in_finally_after_lease_loss_ends_the_pass(
    app: App, make_engine: Callable[..., TestEngine], sync: bool
) -> None:
    # issue 6 item 4: the lease is lost mid-step, the function awaits a step in `finally:`
    gate, ended = Gate(), []
    _register(app, gate, ended, sync=sync)
    clock = MockClock(autojump=False)
    t = make_engine(clock=clock)
    await t.__aenter__()
    try:
        await t.send(Event("go"))
        await asyncio.to_thread(gate.entered.wait, DEADLINE)
        engine = t.app.engine
        # another worker takes the run over: this pass's lease token is no longer the run's.
        # In one job: between a release and a lease of their own, this worker's loop could
        # lease the run again itself (review R7 of the twelfth stop: a flake in a gate)
        served = engine.served

        def take_over(tx: StoreTx) -> list[Lease]:
            tx.release_owner("test-worker", clock.now())
            return tx.lease_due("other-worker", clock.now(), 10, 60, served)

        assert len(await engine.writer.write(take_over)) == 1
        gate.opened.set()
        await _eventually(lambda: bool(ended), "the step in `finally:` returned or raised")
        assert ended == ["Suspended"]
        await _eventually(lambda: not t.worker.active, "the pass ended")  # type: ignore[union-attr]
    finally:
        gate.opened.set()
        await asyncio.wait_for(t.__aexit__(None, None, None), DEADLINE)
