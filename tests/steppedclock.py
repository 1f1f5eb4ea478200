"""A system clock with an offset a test steps (an NTP step, a virtual machine resumed): the clock
watch (``engine/_clock_watch.py``) measures it as it would the machine's own."""

from __future__ import annotations

import asyncio
import time

from stepline.clock import Idle, SystemClock


class SteppedClock(SystemClock):
    """Wall time plus an offset the test changes (a clock stepped by NTP)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep_until(
        self, deadline: float | None, wake: asyncio.Event, *, idle: Idle = False
    ) -> None:
        shifted = None if deadline is None else deadline - self.offset
        await super().sleep_until(shifted, wake, idle=idle)
