"""``MockClock``: virtual time for tests.

With ``autojump=True`` (the default) the clock jumps straight to the engine's next deadline
whenever the worker is idle (no pass in flight, no run a ``send`` is leasing for it, and no
wake-up pending for ``autojump_threshold`` real seconds), so sleeps of days, wait timeouts and
retry backoffs complete instantly. Several workers on one clock: it jumps only when every one
that has waited on it says it is idle. With ``autojump=False`` time moves only when the test
calls ``advance()`` or ``set()``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable

from stepline.clock import Idle


class MockClock:
    """A Clock whose time the test controls."""

    def __init__(
        self,
        start: float | None = None,
        *,
        autojump: bool = True,
        autojump_threshold: float = 0.005,
    ) -> None:
        self._now = time.time() if start is None else start
        self.autojump = autojump
        self.autojump_threshold = autojump_threshold
        self._moved = asyncio.Event()
        self.jumps = 0
        # what each worker that waited here answers when asked whether it is idle (weakly:
        # a worker gone is idle)
        self._idlers: dict[int, weakref.WeakMethod[Callable[[], bool]]] = {}

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
        self._moved.set()

    def set(self, instant: float) -> None:
        """Move time forward to ``instant`` (epoch seconds)."""
        self.advance(max(0.0, instant - self._now))

    async def sleep_until(
        self, deadline: float | None, wake: asyncio.Event, *, idle: Idle = False
    ) -> None:
        self._attach(idle)
        while not wake.is_set():
            if deadline is not None and self._now >= deadline:
                return
            if self.autojump and deadline is not None and self._all_idle(idle):
                try:
                    await asyncio.wait_for(wake.wait(), self.autojump_threshold)
                except TimeoutError:
                    # idle still: a pass started meanwhile without a wake-up (a run ``send``
                    # handed over) holds time still, or its lease expired under it
                    if self._all_idle(idle):
                        self.jumps += 1
                        self._now = max(self._now, deadline)
                return
            self._moved.clear()
            waiters = [
                asyncio.ensure_future(wake.wait()),
                asyncio.ensure_future(self._moved.wait()),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED, timeout=0.05)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if deadline is None:
                # Back to the worker loop, which reads the next deadline again: a move of the
                # clock made before this wait began is then never missed.
                return

    def _attach(self, idle: Idle) -> None:
        """Remember a worker's idle question (a bound method), to ask it whenever any worker
        waiting here would jump."""
        owner = getattr(idle, "__self__", None)
        if owner is not None and id(owner) not in self._idlers:
            self._idlers[id(owner)] = weakref.WeakMethod(idle)  # type: ignore[arg-type]
            weakref.finalize(owner, self._idlers.pop, id(owner), None)

    def _all_idle(self, idle: Idle) -> bool:
        if not (idle() if callable(idle) else idle):
            return False
        for ref in list(self._idlers.values()):
            other = ref()
            if other is not None and not other():
                return False
        return True
