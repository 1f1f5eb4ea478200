"""Review R7: a step body's own deadline on a slow call (``asyncio.timeout``, or anyio's
``fail_after``, which httpx's timeouts use) belongs to the body: it times the body out (the
attempt fails with TimeoutError, the function's ``except StepError`` handles it), never the
function's own task."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest
from _polling import until

from stepline import App, Context, Event, StepError, TriggerEvent


async def _slow_call(kind: str) -> None:
    """A slow call (2 s, real time) under the body's own deadline of 0.2 s."""
    if kind == "asyncio.timeout":
        async with asyncio.timeout(0.2):
            await asyncio.sleep(2)  # real time: the slow call; its deadline cuts it at 0.2 s
    else:
        with anyio.fail_after(0.2):
            await asyncio.sleep(2)  # real time: the slow call; its deadline cuts it at 0.2 s


@pytest.mark.parametrize("kind", ["asyncio.timeout", "anyio.fail_after"])
async def test_a_step_bodys_own_deadline_times_the_body_out(tmp_path: Path, kind: str) -> None:
    app = App("body-deadline", db=str(tmp_path / "s.db"))
    seen: list[str] = []

    async def call() -> str:
        try:
            await _slow_call(kind)
        except TimeoutError:
            seen.append("body timed out")
            raise
        return "slept"

    @app.function(id="caller", trigger=TriggerEvent("go"), retries=0)
    async def caller(ctx: Context) -> str:
        try:
            return await ctx.step.run("call", call)
        except StepError as exc:
            return f"step failed: {exc.error_name}"

    try:
        async with app.worker(worker_id="w", poll_interval=0.05):
            [event_id] = await app.send_async(Event("go"))

            async def ended() -> Any:
                [run] = await app.runs(event_id=event_id)
                return run.status in ("COMPLETED", "FAILED") and run

            run = await until("the run to end", ended, timeout=30)
    finally:
        app.close()
    assert (run.status, run.output, seen) == (
        "COMPLETED",
        "step failed: TimeoutError",
        ["body timed out"],
    ), (run.status, run.output, run.error, seen)
