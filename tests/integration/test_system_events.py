"""System events: every cancellation announces itself, whatever path cancelled the run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Debounce, Event, Singleton, TriggerEvent
from stepline.testing import MockClock, TestEngine

Make = Callable[..., TestEngine]
T0 = 1_700_000_000.0
CANCELLED = "inngest/function.cancelled"


async def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check()`` (sync or async) until truthy; ``AssertionError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def test_a_singleton_cancel_from_a_debounce_flush_emits_function_cancelled(
    app: App, make_engine: Make
) -> None:
    # issue 6 item 6: the run a debounce starts replaces the active singleton run; that
    # cancellation emitted no inngest/function.cancelled
    seen: list[dict[str, Any]] = []

    @app.function(
        id="latest",
        trigger=TriggerEvent("sync"),
        debounce=Debounce("1m"),
        singleton=Singleton("event.data.u", "cancel"),
    )
    async def latest(ctx: Context) -> Any:
        await ctx.step.sleep("work", "1h")

    @app.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
    async def cleanup(ctx: Context) -> Any:
        seen.append(dict(ctx.event.data))

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:

        async def flushed_run(count: int) -> Any:
            clock.advance(61)
            await t.tick()
            runs = await until(
                f"{count} runs of latest",
                lambda: _runs_if(t, "latest", count),
            )
            return runs[0]

        await t.send(Event("sync", {"u": "u1"}))
        first = await flushed_run(1)
        await t.wait_for_status(first.run_id, "SLEEPING")
        await t.send(Event("sync", {"u": "u1"}))
        await flushed_run(2)
        assert (await t.wait_for_run(first.run_id)).status == "CANCELLED"
        [cleanup_run] = await until("the cleanup run", lambda: _runs_if(t, "cleanup", 1))
        await t.wait_for_run(cleanup_run.run_id)
    assert [(s["run_id"], s["function_id"]) for s in seen] == [(first.run_id, "latest")]


async def _runs_if(t: TestEngine, function_id: str, count: int) -> list[Any] | None:
    runs = await t.runs(function_id=function_id)
    return sorted(runs, key=lambda r: r.created_at) if len(runs) == count else None
