"""The event loop Stepline's own runners run on (``stepline worker`` and ``App.run_worker``,
``stepline dev``, ``stepline server``): uvloop's when it is installed (``uvicorn[standard]``, a
dependency, brings it on Linux and macOS), else asyncio's. ``STEPLINE_LOOP=asyncio`` picks
asyncio's loop.

uvloop runs the loop's own work in C (its turn, its ready queue, the handles of the callbacks a
step's commit schedules): a step of a 100-step run on PostgreSQL cost the loop thread 329k
instructions on asyncio's loop, 286k on uvloop's (callgrind, December 2026). Code that runs an
app on a loop of its own (``asyncio.run``, a web framework's) keeps that loop: what Stepline
does on a loop works on either (``tests/integration/test_both_loops.py`` runs steps on both,
on every store).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LOOP_VARIABLE = "STEPLINE_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop is installed and ``STEPLINE_LOOP`` is not
    ``asyncio``; None (asyncio's own loop) otherwise."""
    if os.environ.get(LOOP_VARIABLE, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
