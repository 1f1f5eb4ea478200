"""Waiting in in-process tests without racing the clock: poll a condition until it holds, with
a deadline that turns a hang into a failure naming what never happened (issue 6 item 8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check()`` (sync or async) until truthy and return it; ``AssertionError`` naming
    ``what`` after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)  # real time: the poll interval; the deadline bounds the wait
