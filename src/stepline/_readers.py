"""A socket's reader registered with an event loop for good (``add_reader`` once, called each
time the socket is readable), kept alive on every loop.

asyncio's selector loops call a reader on every turn while its socket is readable or reports
an error. uvloop's (libuv's ``uv_poll``) calls a reader of a socket that reports an error
(``POLLERR``: a connection reset, as a PostgreSQL server killed with input it had not read
sends) once, then drops its registration silently: a reader that read some of what came (the
server's last message) and waits on for the rest, or the error, is never called again. A
PostgreSQL connection's reply awaited that way waited forever: a worker on uvloop never
recovered from a PostgreSQL restart nor stopped on SIGTERM (``test_crash.py``, December 2026;
``tests/integration/test_connection_reset.py`` makes it happen at will). After each call of
such a reader on such a loop, ``keep_reading`` registers it again while its socket is in error
or hung up, so that it is called again, as on asyncio's loops. A registration made for one
wait and removed after it needs none of this: each new one is told of the error once.

A writer registered on the same socket when the error comes (a large commit whose write waits
for room: ``store/postgres/_pipeline._drive`` waits to write or read, its writer beside the
kept reader) makes the reader's own registration again not enough: uvloop calls the reader,
then the writer, then clears both (``UVPoll._fatal_error``), the reader registered again inside
its call with them (``test_connection_reset.py``: the wait after the reset was never resumed).
``keep_reading`` given ``still`` registers the reader again at the loop's next turn as well,
after that call has ended, if ``still()`` (the reader is still wanted: its socket not closed)
and the socket has still ended.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable
from typing import Any

# a socket in error (reset), hung up (its stream ended) or closed under the reader
_ENDED = (
    getattr(select, "POLLERR", 0) | getattr(select, "POLLHUP", 0) | getattr(select, "POLLNVAL", 0)
)


def drops_readers(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` may drop a reader's registration once its socket reported an error
    (any loop but asyncio's selector loops: uvloop's)."""
    return not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)


def poller(socket: int) -> Any:
    """A ``select.poll`` object watching ``socket`` to be readable (None where there is none:
    Windows, where no loop drops readers)."""
    if not hasattr(select, "poll"):
        return None
    watching = select.poll()
    watching.register(socket, select.POLLIN | select.POLLPRI)
    return watching


def ended(watching: Any) -> bool:
    """Whether the socket ``watching`` (a ``poller``) watches is in error, hung up or closed."""
    if watching is None:
        return False
    try:
        return any(events & _ENDED for _, events in watching.poll(0))
    except OSError:
        return True


def keep_reading(
    loop: asyncio.AbstractEventLoop,
    socket: int,
    watching: Any,
    reader: Callable[..., object],
    *args: object,
    still: Callable[[], bool] | None = None,
) -> None:
    """(After a call of ``reader``, registered for ``socket`` on ``loop``, that keeps it) on a
    loop that drops readers, ``reader`` registered again if the socket has ended: called again
    at the loop's next turn, as long as it stays so. With ``still``, registered again at that
    turn too, before it looks, if ``still()`` and the socket has still ended (the registration
    made here is cleared when a writer of the socket was told of the error with it)."""
    if ended(watching) and not loop.is_closed():
        _register(loop, socket, reader, args)
        if still is not None:
            loop.call_soon(_again, loop, socket, watching, reader, args, still)


def _again(
    loop: asyncio.AbstractEventLoop,
    socket: int,
    watching: Any,
    reader: Callable[..., object],
    args: tuple[object, ...],
    still: Callable[[], bool],
) -> None:
    if still() and ended(watching) and not loop.is_closed():
        _register(loop, socket, reader, args)


def _register(
    loop: asyncio.AbstractEventLoop,
    socket: int,
    reader: Callable[..., object],
    args: tuple[object, ...],
) -> None:
    """``reader`` registered for ``socket`` afresh (uvloop: its removal drops the errored
    socket's closed handle, and a new one is made: it is told of the error again)."""
    loop.remove_reader(socket)
    loop.add_reader(socket, reader, *args)
