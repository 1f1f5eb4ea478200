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
(``tests/integration/test_connection_reset.py``, on both loops). The case reasoned about since,
a writer registered beside that reader when the error comes (a large commit whose write waits
for room: uvloop calls both once, then clears both, the reader registered again inside its call
with them), was made to happen (the connection's next wait was never resumed) and fixed
(``_readers.keep_reading``'s ``still``: registered again at the next turn too).

The evidence since (December 2026, 2-3 runs at once beside other suites, load 3-22):
``test_database_restart_mid_run`` ran 90 times with the workers on uvloop (49 of them with the
workers' debug logs, ``CRASH_LOG_LEVEL``) and ``test_kill_9_under_load`` 58 times; the other
crash, reconnect, outage, reset and wake-up tests on PostgreSQL 4 times each (those in process
on uvloop's loops too): no hang, no worker that did not stop. But one restart run (an early
one, before the writer fix, its workers' logs not kept) failed its check that a step body runs
again only if it ran before the database was back: one run's step ran after the server was
back, its commit did not land, and the same worker ran it again 3 s later (no committed step
ran again). Not seen again in the 89 other runs on uvloop, nor in 23 on asyncio's loop; its
cause is not found, so the workers stay on asyncio's loop: the restart test runs on both loops
in every gate (``STEPLINE_LOOP=uvloop`` for its second run) and says, when that check fails,
when the database was back. Every Inngest SDK test passes with ``stepline dev`` and the workers
on uvloop (``STEPLINE_LOOP=uvloop``; nine failed when uvloop first became the default, most
likely through the driver's HTTP client, fixed since). What uvloop would give: ~13 % fewer
loop-thread instructions a step (callgrind: 329k -> 286k on a 100-step PostgreSQL run).
``stepline server`` runs on
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
