"""Every process a test process starts with ``subprocess`` dies with that test process.

tests/forkserver.py's processes die with the test process that asked for them (a pidfd watch,
``PR_SET_PDEATHSIG``); the processes a test starts itself with ``subprocess`` — ``Popen``,
``run``, asyncio's subprocesses, ``forkserver.run``'s fresh interpreters and programs, a nested
pytest run — were re-parented to init when their test process was killed (a gate stopped, a
timeout's ``os._exit``) and ran on: a ``stepline worker`` for good, a nested run for minutes.

``install`` wraps ``subprocess.Popen`` (in each test process: tests/conftest.py): each process it
starts is handed to a fork server (``guard``: ``forkserver.guard``), which holds a pidfd of it
and one of the test process (``Guards``) and SIGKILLs it when the test process ends first, or
when the server ends (the run is over). A pidfd names one process, never a later one given the
same pid, so a process that ended is never mistaken for another. Left alone: a process started
in a session of its own (``start_new_session=True``: pgcluster's watchers, which outlive the test
process on purpose, to stop its cluster), and the fork servers themselves (``unguarded``).

This module is imported by the fork server too (``Guards``): it imports nothing of the tests.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()


# -- in the fork server ---------------------------------------------------------------------------
class Guards:
    """The processes guarded by a fork server: each with its test process, as two pidfds
    registered in the server's selector (with this object as their data)."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._pairs: dict[int, tuple[int, int]] = {}  # either pidfd -> (process's, owner's)

    def add(self, pid: int, owner: int) -> None:
        """Kill ``pid`` when ``owner`` ends (at once if it has ended already)."""
        try:
            process = os.pidfd_open(pid)
        except ProcessLookupError:
            return  # ended already
        try:
            watched = os.pidfd_open(owner)
        except ProcessLookupError:
            _kill(process)
            os.close(process)
            return
        self._pairs[process] = self._pairs[watched] = (process, watched)
        self._selector.register(process, selectors.EVENT_READ, self)
        self._selector.register(watched, selectors.EVENT_READ, self)

    def ended(self, fd: int) -> None:
        """One of the pidfds became readable: its process ended. The test process: kill what
        it started; the guarded process: nothing left to do."""
        process, watched = self._pairs[fd]
        if fd == watched:
            _kill(process)
        self._drop(process, watched)

    def kill_all(self) -> None:
        """The server ends: so does every process it guards (the run is over)."""
        for process, watched in set(self._pairs.values()):
            _kill(process)
            self._drop(process, watched)

    def _drop(self, process: int, watched: int) -> None:
        for fd in (process, watched):
            del self._pairs[fd]
            self._selector.unregister(fd)
            os.close(fd)


def _kill(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass  # ended already


# -- in a test process ----------------------------------------------------------------------------
def install(guard: Callable[[int], None]) -> None:
    """Make every ``subprocess.Popen`` of this process call ``guard(pid)`` once the process is
    started (not for ``start_new_session=True`` nor inside ``unguarded``). A failed ``guard``
    kills the process and raises: none runs unguarded."""
    original = subprocess.Popen.__init__
    if getattr(original, "guarded", False):
        return

    @functools.wraps(original)
    def guarded_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if kwargs.get("start_new_session") or getattr(_local, "off", False):
            return
        try:
            guard(self.pid)
        except BaseException:
            self.kill()
            self.wait()
            raise

    guarded_init.guarded = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = guarded_init  # type: ignore[method-assign]


@contextmanager
def unguarded() -> Iterator[None]:
    """The processes this thread starts meanwhile are not guarded (a fork server, which ends by
    itself with its test process or its run)."""
    before = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = before
