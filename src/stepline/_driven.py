"""A coroutine run on its event loop without an ``asyncio.Task``: the writer's loop commit.

A task costs a loop commit three turns of the loop beyond its round trip: its first step is
scheduled (``call_soon``), the reply's socket readiness sets a future whose callback is
scheduled to wake the task, and the task's end schedules its done callbacks; each turn is an
``epoll_wait`` and the loop's bookkeeping, between a step's commit and the next step. ``Driven``
starts the coroutine at once, in the caller's callback, and resumes it in the very callback
that says its socket is ready: a coroutine awaiting ``SocketWait`` (``_pipeline``'s round trips
do, when ``driving()`` says they run here) is resumed by the loop's reader or writer callback
itself. Any other awaitable (a future, a task) resumes it as a task would (its done callback).

A ``Driven`` is a future (its coroutine's result): ``cancel()`` throws ``CancelledError`` into
the coroutine where it waits, as ``Task.cancel`` does. Unlike a task, ``asyncio.run`` does not
cancel it when it shuts down: a round trip in flight then ends when the loop runs it (its
reply takes a millisecond; the shutdown runs the loop on), or its loop closes first and its
outcome is unknown (see ``BatchWriter._stranded``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol

_READ, _WRITE = 1, 2  # the bits of a socket wait (psycopg's ``Wait`` and ``Ready``)


class _Local(threading.local):
    driving = False
    # Python 3.12+: the loop of the Driven being stepped and the task current there when its
    # step began (a task started eagerly inside the step is current while its first step runs)
    loop: asyncio.AbstractEventLoop | None = None
    task: object = None


_local = _Local()
# from Python 3.12 on a task may run its first step eagerly, inside the Driven's step
# (``asyncio.eager_task_factory``); on 3.11 none can, and the check would cost ~60 bytecodes a
# step on the per-step path (``current_task`` is Python there)
_EAGER_TASKS = sys.version_info >= (3, 12)


if sys.version_info >= (3, 12):

    def driving() -> bool:
        """Whether the running coroutine is a ``Driven``'s, stepped right now: it may await
        ``SocketWait`` (under a task it must await a future); not a task started eagerly
        inside a Driven's step, running its first step there (review R1)."""
        return _local.driving and asyncio.current_task(_local.loop) is _local.task

else:

    def driving() -> bool:
        """Whether the running coroutine is a ``Driven``'s, stepped right now: it may await
        ``SocketWait`` (under a task it must await a future)."""
        return _local.driving


class Watch(Protocol):
    """A socket's reader registered with the loop for good by its owner: a wait for it to be
    readable arms it, instead of adding a reader and removing it again."""

    def arm(self, resume: Callable[[int], object]) -> None:
        """Call ``resume(1)`` (once) when the socket is readable, forgetting it first (as
        ``disarm`` would)."""

    def disarm(self) -> None:
        """Forget the ``resume`` armed, if any."""


class SocketWait:
    """Awaited in a ``Driven`` coroutine: resumed once ``fileno`` is ready as ``wait`` asks
    (bits: 1 read, 2 write); the await's value is what is ready (the same bits). ``watch``:
    the socket's reader, registered for good (``Watch``), if it has one."""

    __slots__ = ("fileno", "wait", "watch")

    def __init__(self, fileno: int, wait: int, watch: Watch | None = None) -> None:
        self.fileno = fileno
        self.wait = wait
        self.watch = watch

    def __await__(self) -> Generator[SocketWait, int, int]:
        ready: int = yield self
        return ready


class Driven(asyncio.Future[Any]):
    """``coro`` run on ``loop`` from now on (see the module's docstring); create it in a
    callback of that loop."""

    def __init__(self, coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._coro = coro
        self._waiting: SocketWait | asyncio.Future[Any] | None = None
        self._step(None, None)

    def _step(self, ready: int | None, error: BaseException | None) -> None:
        if self.done():  # a cancellation scheduled as it ended
            return
        self._waiting = None
        _local.driving = True
        if _EAGER_TASKS:
            _local.loop = loop = self.get_loop()
            _local.task = asyncio.current_task(loop)
        try:
            yielded = self._coro.send(ready) if error is None else self._coro.throw(error)
        except StopIteration as done:
            super().set_result(done.value)
            return
        except asyncio.CancelledError:
            super().cancel()
            return
        except (KeyboardInterrupt, SystemExit) as exc:  # told, and raised on (as a task does)
            super().set_exception(exc)
            raise
        except BaseException as exc:  # the coroutine's own: told to whoever waits
            super().set_exception(exc)
            return
        finally:
            _local.driving = False
        loop = self.get_loop()
        if type(yielded) is SocketWait:
            self._waiting = yielded
            try:
                if yielded.wait & _READ:
                    if yielded.watch is not None:
                        yielded.watch.arm(self._socket_ready)
                    else:
                        loop.add_reader(yielded.fileno, self._socket_ready, _READ)
                if yielded.wait & _WRITE:
                    loop.add_writer(yielded.fileno, self._socket_ready, _WRITE)
            except BaseException as exc:  # the socket closed under it: told where it waits
                self._unwatch(yielded)
                loop.call_soon(self._step, None, exc)
            return
        if asyncio.isfuture(yielded) and getattr(yielded, "_asyncio_future_blocking", False):
            yielded._asyncio_future_blocking = False
            self._waiting = yielded
            yielded.add_done_callback(self._future_done)
            return
        error = RuntimeError(f"a driven coroutine awaited {yielded!r}: neither a future nor a wait")
        loop.call_soon(self._step, None, error)

    def _socket_ready(self, ready: int) -> None:
        waiting = self._waiting
        if type(waiting) is SocketWait:
            if waiting.watch is None or waiting.wait & _WRITE:  # (a watch forgot its resume
                self._unwatch(waiting)  # as it called it: ``Watch.arm``)
            self._step(ready, None)

    def _unwatch(self, waiting: SocketWait) -> None:
        loop = self.get_loop()
        if waiting.wait & _READ:
            if waiting.watch is not None:
                waiting.watch.disarm()
            else:
                loop.remove_reader(waiting.fileno)
        if waiting.wait & _WRITE:
            loop.remove_writer(waiting.fileno)

    def _future_done(self, future: asyncio.Future[Any]) -> None:
        if self._waiting is future:
            self._step(None, None)  # the coroutine reads the future's outcome (Future.__await__)

    def cancel(self, msg: Any = None) -> bool:
        """Throw ``CancelledError`` into the coroutine where it waits (as ``Task.cancel``: a
        future it awaits is cancelled, and wakes it); False when it has ended."""
        if self.done():
            return False
        waiting = self._waiting
        if type(waiting) is SocketWait:
            self._unwatch(waiting)
            self._waiting = None
            self.get_loop().call_soon(self._step, None, asyncio.CancelledError(msg))
            return True
        if isinstance(waiting, asyncio.Future) and waiting.cancel(msg):
            return True
        self.get_loop().call_soon(self._step, None, asyncio.CancelledError(msg))
        return True
