"""What a worker logs when a run it executes is cancelled (issue 6 review item 2)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine


async def test_a_run_cancelled_mid_step_is_logged_as_cancelled_not_lease_lost(
    app: App, make_engine: Callable[..., TestEngine], caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 review item 2: one worker, a run cancelled while a step executes: the worker
    # logged "lease lost, another worker owns it now"
    caplog.set_level(logging.DEBUG, logger="stepline")
    started, release = asyncio.Event(), asyncio.Event()

    @app.function(id="in-flight", trigger=TriggerEvent("go"))
    async def in_flight(ctx: Context) -> Any:
        async def slow() -> str:
            started.set()
            await release.wait()
            return "kept"

        await ctx.step.run("slow", slow)

    async with make_engine(clock=MockClock(autojump=False)) as t:
        worker = t.worker
        assert worker is not None
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        await started.wait()
        assert await t.app.cancel_run(run.run_id) is True
        release.set()

        async def pass_ended() -> bool:
            return run.run_id not in worker.active

        await until("the cancelled pass to end", pass_ended)
    messages = [r.getMessage() for r in caplog.records if r.name == "stepline.worker"]
    assert f"run {run.run_id}: cancelled during its pass" in messages
    assert not [m for m in messages if "lease lost" in m or "another worker" in m]
