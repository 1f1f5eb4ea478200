"""A pause of Python's automatic garbage collector around an ingest verb.

An ingest verb of a batch of events holds its records (the events, the candidate waits and
matchers, the effects to write, the results) alive until it ends, some thousands of container
objects. Each generation-0 collection while it runs walks them and moves them to an older
generation, and the objects so promoted bring the next full collection closer: a walk of every
object of the process, tens of milliseconds in a large one, that lands in some batch. Nearly all
of the verb's objects are freed by reference counting when it ends, so the collector finds no
garbage among them; pausing it for the verb spares those walks (measured in bench/README.md,
"Where the time goes").

``collector_paused()`` turns the automatic collector off for the block and back on after it,
only if it was on when the outermost pause began: pauses in several threads nest (counted
under a lock), and a process that turned the collector off keeps it off. Allocations made
meanwhile still count towards the next automatic collection, which runs after the pause.
"""

from __future__ import annotations

import gc
import threading
from types import TracebackType


class _CollectorPause:
    """The process's one pause (see the module's doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0  # pauses in progress, in every thread
        self._turned_off = False  # whether the outermost pause turned the collector off

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._turned_off = gc.isenabled()
                if self._turned_off:
                    gc.disable()
            self._depth += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._turned_off:
                self._turned_off = False
                gc.enable()


_PAUSE = _CollectorPause()


def collector_paused() -> _CollectorPause:
    """A context manager pausing the automatic garbage collector for its block (see the
    module's doc)."""
    return _PAUSE
