"""``RepeatedWarnings``: a warning the server logs once per window and key, its repeats within
the window counted and told in one line when the window ends.

A store that is unavailable fails every request until it is back: the event API and the other
handlers answer each with a 503 and its reason, but logging each one floods the log (a client
retrying in a loop, or many clients, make thousands a second) and buries the first line, which
is the one an operator needs. Python's ``logging`` has no rate limit of its own; a filter on
the logger could not count what it drops per key nor tell it later, hence this small class."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass

WINDOW = 10.0  # seconds a logged warning's repeats are counted before they are told

Schedule = Callable[[float, Callable[[], None]], "weakref.ref[asyncio.AbstractEventLoop] | None"]


def _on_running_loop(
    delay: float, callback: Callable[[], None]
) -> weakref.ref[asyncio.AbstractEventLoop]:
    """The running loop runs ``callback`` in ``delay`` seconds; returns the loop, weakly."""
    loop = asyncio.get_running_loop()
    loop.call_later(delay, callback)
    return weakref.ref(loop)


@dataclass
class _Window:
    loop: weakref.ref[asyncio.AbstractEventLoop] | None  # the loop that runs its end
    repeats: int = 0
    last: str = ""  # the last repeat's message

    def lost(self) -> bool:
        """Whether its end will never run: its loop closed (or is gone) first."""
        if self.loop is None:
            return False
        loop = self.loop()
        return loop is None or loop.is_closed()


class RepeatedWarnings:
    """Warnings to ``logger`` with repeats folded: the first of a key is logged at once; those
    of the same key in the next ``window`` seconds are counted, and when the window ends one
    line tells how many there were and the last of them, and opens a new window (a failure
    that lasts is logged once per window); a window with no repeat closes, so the next warning
    of its key is logged at once. ``schedule(delay, callback)`` runs the window's end and
    returns the loop that will, weakly (the running loop's ``call_later``: the server's
    handlers run on it; ``None``: a scheduler with no loop, tests'); with no running
    loop every warning is logged. A window whose loop closed before its end ran ends at the
    next warning of its key, so a key is never silenced for good."""

    def __init__(
        self, logger: logging.Logger, window: float = WINDOW, schedule: Schedule = _on_running_loop
    ) -> None:
        self._logger = logger
        self.window = window
        self._schedule = schedule
        self._open: dict[Hashable, _Window] = {}

    def warn(self, key: Hashable, message: str) -> None:
        """Log ``message`` unless a warning of ``key`` was logged in this window (then count it)."""
        window = self._open.get(key)
        if window is not None and window.lost():
            self._end(key, window, reopen=False)
            window = None
        if window is not None:
            window.repeats += 1
            window.last = message
            return
        self._logger.warning("%s", message)
        self._open_window(key)

    def _open_window(self, key: Hashable) -> None:
        def end() -> None:
            self._end(key, window)

        try:
            window = _Window(self._schedule(self.window, end))
        except RuntimeError:  # no running loop: nothing would end the window
            return
        self._open[key] = window

    def _end(self, key: Hashable, window: _Window, *, reopen: bool = True) -> None:
        if self._open.get(key) is not window:
            return  # ended already (at a warning: its loop had closed)
        del self._open[key]
        if window.repeats:
            self._logger.warning(
                "%d more like it in the last %g s, the last: %s",
                window.repeats,
                self.window,
                window.last,
            )
            if reopen:
                self._open_window(key)
