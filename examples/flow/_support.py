"""Small helpers shared by the flow-control demos (not part of Stepline's API)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from stepline import Run
from stepline.testing import TestEngine

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 10.0) -> T:
    """Call ``check`` until it returns a truthy value and return that value; ``TimeoutError``
    after ``timeout`` real seconds. Used where the worker does something in the background
    (a debounce firing, a cron tick) after the demo moved the clock."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("the expected runs did not appear")
        await asyncio.sleep(0.005)


async def ended_runs(t: TestEngine, function_id: str) -> list[Run]:
    """Every run of a function once it has ended, oldest first."""
    runs = await t.runs(function_id=function_id, limit=1000)
    done = [await t.wait_for_run(r.run_id) for r in runs]
    return sorted(done, key=lambda r: (r.created_at, r.run_id))


def advance(t: TestEngine, seconds: float = 0.0, *, to: float | None = None) -> None:
    """Move virtual time forward by ``seconds`` (or to the instant ``to``) and tell the worker
    to look for due work at once. With ``MockClock(autojump=False)``, a worker that was between
    two looks at the queue when the clock moved could otherwise wait for a wake-up forever."""
    if to is not None:
        t.clock.set(to)
    t.clock.advance(seconds)
    assert t.worker is not None
    t.worker.wake()


def seconds_after(moment: datetime | None, t0: float) -> int:
    """A run's timestamp as whole virtual seconds after ``t0``."""
    assert moment is not None
    return round(moment.timestamp() - t0)
