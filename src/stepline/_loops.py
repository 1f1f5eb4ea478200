"""The event loop Stepline's own runners run on: ``stepline server`` on uvloop's when it is
installed (``uvicorn[standard]``, a dependency, brings it on Linux and macOS), as uvicorn does
when it owns the loop; ``stepline worker`` / ``App.run_worker`` and ``stepline dev`` on
asyncio's. ``STEPLINE_LOOP=asyncio`` or ``STEPLINE_LOOP=uvloop`` picks the loop of every runner.

Why the workers stay on asyncio's loop by default: a worker process on uvloop did not recover
from a PostgreSQL outage, nor stop on SIGTERM, in 2 of ~10 runs of
``test_crash.py::test_database_restart_mid_run`` under load (December 2026). The cause, found
since: uvloop calls a reader of a socket that reports an error once and drops its registration,
and the reader the loop keeps for its commit connection read the server's last message (a
PostgreSQL server shut down immediately sends a warning, then its reset) and waited on for a
reply that never came; fixed (``stepline._readers``), and made to happen at will
(``tests/integration/test_connection_reset.py``, on both loops). The workers stay on asyncio's
loop all the same until uvloop has run the crash tests in many more gates: they passed 12 of 12
runs by hand on uvloop with the fix, under load, and every Inngest SDK test passes with
``stepline dev`` and the workers on uvloop (``STEPLINE_LOOP=uvloop``; nine failed when uvloop
first became the default, most likely through the driver's HTTP client, fixed since), but
uvloop's ~13 % fewer loop-thread instructions a step (callgrind: 329k -> 286k on a 100-step
PostgreSQL run) are not worth a default that has surprised twice. ``stepline server`` runs on
uvloop as uvicorn would. Code that runs an app on a loop of its own (``asyncio.run``, a web
framework's) keeps that loop; ``tests/integration/test_both_loops.py`` runs steps on both
loops, on every store.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LOOP_VARIABLE = "STEPLINE_LOOP"


def loop_factory(uvloop_by_default: bool = False) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop is installed and ``STEPLINE_LOOP`` is
    ``uvloop``, or unset with ``uvloop_by_default``; None (asyncio's own loop) otherwise."""
    asked = os.environ.get(LOOP_VARIABLE, "").strip().lower()
    if asked == "asyncio" or (asked != "uvloop" and not uvloop_by_default):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, uvloop_by_default: bool = False) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` picks."""
    with asyncio.Runner(loop_factory=loop_factory(uvloop_by_default)) as runner:
        return runner.run(main)
