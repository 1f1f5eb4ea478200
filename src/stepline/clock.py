"""The injectable clock. Every time the engine decides on comes from a ``Clock``.

``SystemClock`` is wall time. ``stepline.testing.MockClock`` is virtual time that tests advance by
hand or let jump ahead whenever the engine is idle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

# whether nothing else is in flight: asked when a virtual clock would jump (what is in flight
# changes while it waits), or a fixed answer
Idle = bool | Callable[[], bool]


class Clock(Protocol):
    """Where the engine reads the time and how it waits for a moment to come."""

    def now(self) -> float:
        """The current time in epoch seconds."""
        ...

    async def sleep_until(
        self, deadline: float | None, wake: asyncio.Event, *, idle: Idle = False
    ) -> None:
        """Return at ``deadline`` (never, if None) or as soon as ``wake`` is set. ``idle`` tells
        a virtual clock that nothing else is in flight, so it may jump to ``deadline``: a
        callable is asked again at the moment it would jump."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(
        self, deadline: float | None, wake: asyncio.Event, *, idle: Idle = False
    ) -> None:
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        if wake.is_set():
            return
        try:
            # in this task (wait_for would wrap the wait in a task of its own: a wake-up then
            # took two more turns of the event loop to reach the sleeper)
            async with asyncio.timeout(timeout):
                await wake.wait()
        except TimeoutError:
            pass
