"""A worker's wake-up signal, saying why it was set.

``set()`` (a pass ended, an in-process send, a plain notification, a stop): look for any due
work. ``name(runs)`` (a notification naming the new runs another process's transaction made due,
and nothing else: ``store/postgres/wakeups.py``): a lease of those runs may do. ``take()``
clears the signal and says which it was since the last ``take()``. A worker may claim named runs
as they are named (``claim``): it leases them itself then (or starts the passes of those handed
to it with their leases), and the signal is not set for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

MAX_NAMED = 64  # runs kept between two takes (more: look for any due work)


class WakeSignal(asyncio.Event):
    """An ``asyncio.Event`` that also keeps the runs named since it was last taken."""

    def __init__(self) -> None:
        super().__init__()
        self._plain = False
        self._named: dict[str, str] = {}  # run id: function id
        # asked first with the runs a wake-up names: those it did not take over, for which
        # the signal is set as usual (none: the signal is left as it was)
        self.claim: Callable[[Sequence[tuple[str, str]]], Sequence[tuple[str, str]]] | None = None

    def set(self) -> None:
        self._plain = True
        super().set()

    def name(self, runs: Sequence[tuple[str, str]]) -> None:
        """Wake for the (function id, run id) ``runs`` only (in the signal's event loop), unless
        ``claim`` takes them over."""
        if self.claim is not None:
            runs = self.claim(runs)
            if not runs:
                return
        for function_id, run_id in runs:
            self._named[run_id] = function_id
        if len(self._named) > MAX_NAMED:
            self._plain = True
        super().set()

    def take(self) -> tuple[bool, dict[str, str]]:
        """Clear the signal; whether it was set to look for any work since the last take, and
        the runs named since then (run id: function id)."""
        plain, named = self._plain, self._named
        self._plain, self._named = False, {}
        self.clear()
        return plain, named
