"""The event loop Stepline's own runners run on: uvloop's when it is installed
(``uvicorn[standard]``, a dependency, brings it on Linux and macOS), for ``stepline server``,
``stepline worker`` / ``App.run_worker`` and ``stepline dev`` alike, as uvicorn picks it when it
owns the loop; asyncio's otherwise. ``STEPLINE_LOOP=asyncio`` picks asyncio's loop for every
runner (``STEPLINE_LOOP=uvloop``: uvloop's, the default). Code that runs an app on a loop of its
own (``asyncio.run``, a web framework's) keeps that loop; ``tests/integration/test_both_loops.py``
runs steps on both loops, on every store.

Why uvloop: a worker's loop thread runs ~13 % fewer instructions a step on it (callgrind: 329k ->
286k on a 100-step PostgreSQL run); its process ~10 % less CPU a step in six benchmark pairs
alternated at load 8-12 (median 0.49 against 0.55 ms), where the wall-clock rows were noise.

Why the workers waited for it: a worker process on uvloop did not recover from a PostgreSQL
outage, nor stop on SIGTERM, in 2 of ~10 runs of ``test_crash.py::test_database_restart_mid_run``
under load (December 2026). uvloop (libuv's ``uv_poll``) calls a reader of a socket that reports
an error once and drops its registration, and the reader a loop keeps for its commit connection
read the server's last message and waited on for a reply that never came; fixed
(``stepline._readers``) and made to happen at will (``tests/integration/test_connection_reset.py``,
on both loops); so was a writer registered beside that reader when the error comes (uvloop
clears both after calling them: the reader registered again at the next turn too). Then the
restart test ran 150 times with the workers on uvloop and ``test_kill_9_under_load`` 58 times,
under load 3-22, with no hang and no worker that did not stop; one restart run, before the writer
fix, failed its check that a step body runs again only if it ran before the database was back (a
step re-run by the same worker 3 s after the server was back, no committed step run again), cause
not found; after the writer fix, 122 restart runs on uvloop (109 by hand, 13 in gates and CI)
and 83 on asyncio's loop, none failed. The restart test runs on both loops in every gate
(``STEPLINE_LOOP=asyncio`` for its second run).
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
