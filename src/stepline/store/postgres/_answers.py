"""A deadline on the server's answers: a connection whose round trip PostgreSQL has not answered
within the store's ``answer_timeout`` is cut, and its waiter fails as after a reset.

Why: a server that stops answering while its machine stays up (its processes stopped, a storage
stall that holds its backends in the kernel, a server swapped out) keeps acknowledging what this
process sends, at the TCP level, and answers the keepalive probes: neither ``tcp_user_timeout``
nor the keepalives (``_database.link_options``) ever fire, and a ``send`` or a worker's commit
waited as long as the server did (for ever, if it never answers).

How, without a timer per round trip: each connection of the store (``Connection``) names the
round trip in flight (``asked``: an object of that round trip's own, its generator or
coroutine; None between round trips), two attribute writes a round trip (psycopg's ``wait`` for
a thread's, ``_pipeline.send_all_async`` and ``_prepared._outcome`` for an event loop's; any
psycopg connection takes them, watched or not). One thread per process (``_Watchdog``) looks at
every connection it was given (``watch``) every quarter of the shortest deadline (1 s at most):
a connection seen in the same round trip (the same object, which the watchdog holds meanwhile,
so no other can be given its identity) by a look at least its deadline earlier is cut: its
socket is shut down (``shutdown(2)``, on a duplicate of its descriptor checked to be the same
socket by its inode, since the descriptor may have been closed and its number reused
meanwhile). Its waiter, a thread in psycopg's wait or a
loop's reader, reads the end of the connection as it reads a reset: the round trip raises, the
connection is broken (its pool replaces it), and the error says the server did not answer
(``unanswered``). A round trip is cut between its deadline and one look later.

What the cut leaves: the server may still execute what it had received once it answers again
(a frozen backend reads its socket's buffer before its end). So a commit cut is one whose
outcome is unknown, as after any connection lost during a commit (``StoreUnavailable``, never
made again): an event sent again with its id is stored once, and a pass's commit is fenced by
its lease token (committed, or refused once another lease took the run).

Statements that may run long on purpose go without a deadline (``lifted``: the migrations,
which wait for each other's lock and build indexes, and ``stepline db copy``'s reads and
writes of whole tables); a connection waiting for notifications (the wake-up listener) owes
nothing while no round trip is in flight.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

DEFAULT_ANSWER_TIMEOUT = 30.0  # seconds (docs/durability.md says why)
_MOST_BETWEEN_LOOKS = 1.0  # seconds between two looks of the watchdog, at most

log = logging.getLogger("stepline.store.postgres")


class Connection(psycopg.Connection[Any]):
    """A psycopg connection whose round trips the watchdog times (see the module)."""

    asked: object = None  # the round trip in flight (an object of its own), None: none
    answer_within: float | None = None  # seconds; None: no deadline (not watched, or lifted)
    cut_after: float | None = None  # set by the watchdog when it cut the connection
    # the watchdog's own: the round trip it saw in flight, and when it first saw it
    _seen: object = None
    _seen_at = 0.0
    _socket: tuple[int, int] | None = None  # (descriptor, inode) when watched

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """psycopg's ``wait`` (every round trip of a thread's), named (``asked``), its error
        said as ``unanswered`` once the watchdog cut it."""
        self.asked = gen
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            said = unanswered(self, exc)
            if said is exc:
                raise
            raise said from exc
        finally:
            self.asked = None


class Unanswered(psycopg.OperationalError):
    """A round trip the server did not answer within its deadline: the watchdog cut its
    connection (``StoreUnavailable``; never made again on another connection at once, as a
    round trip on a connection that had ended is: it would wait for the same server)."""


def unanswered(conn: psycopg.Connection[Any], error: psycopg.Error) -> psycopg.Error:
    """``error``, raised by a round trip on ``conn``; when the watchdog cut ``conn``, an
    ``Unanswered`` that says so, to raise instead (from ``error``, which read the cut as the
    connection's end: "server closed the connection unexpectedly")."""
    within = getattr(conn, "cut_after", None)
    if within is None or not isinstance(error, psycopg.OperationalError):
        return error
    return Unanswered(
        f"the server did not answer within {within:g} s (answer_timeout): its connection was closed"
    )


def cut(error: BaseException) -> bool:
    """Whether ``error`` is a round trip's whose connection the watchdog cut (``Unanswered``),
    or was raised from one."""
    return isinstance(error, Unanswered) or isinstance(error.__cause__, Unanswered)


ANSWER_WITHIN = "stepline_answer_within"  # connect()'s option: the deadline, not libpq's


def connect(url: str, **options: Any) -> Connection:
    """``psycopg.connect(url, **options)``, the connection watched (``watch``) with the
    deadline ``options[ANSWER_WITHIN]`` (none: not watched), given beside libpq's options (the
    store's connections of their own: presence, gates, listener, ``db check``'s look)."""
    answer_within = options.pop(ANSWER_WITHIN, None)
    conn = Connection.connect(url, **options)
    watch(conn, answer_within)
    return conn


def watch(conn: psycopg.Connection[Any], answer_within: float | None) -> None:
    """Cut ``conn`` (a ``Connection``) when the server has not answered one of its round trips
    within ``answer_within`` seconds (None: never)."""
    if answer_within is not None and isinstance(conn, Connection):
        _watchdog.add(conn, answer_within)
        _watchdog.start()


@contextmanager
def lifted(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """``conn`` without a deadline in the block (a migration, ``db copy``: statements that may
    run long on purpose); its deadline back after."""
    within = conn.answer_within if isinstance(conn, Connection) else None
    if within is None:
        yield conn
        return
    assert isinstance(conn, Connection)
    conn.answer_within = None
    try:
        yield conn
    finally:
        conn.answer_within = within


class _Watchdog:
    """The process's one thread that cuts the connections the server has not answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _conns and _thread
        self._conns: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self.between_looks = _MOST_BETWEEN_LOOKS
        self._last_look: float | None = None  # (the watchdog's thread only)

    def add(self, conn: Connection, answer_within: float) -> None:
        """Look at ``conn`` from now on, its deadline ``answer_within`` seconds (not on a system
        whose sockets are not files: Windows)."""
        fileno = conn.pgconn.socket
        try:
            conn._socket = (fileno, os.fstat(fileno).st_ino)
        except OSError:
            return
        conn.answer_within = answer_within
        with self._lock:
            self._conns.add(conn)
            self.between_looks = min(self.between_looks, max(0.01, answer_within / 4))

    def start(self) -> None:
        """Its thread started, if it is not running (a forked child has none)."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._run, name="stepline-pg-answers")
                thread.daemon = True
                self._thread = thread
                thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.between_looks)
            try:
                self.look(time.monotonic())
            except Exception:  # a bug: said, and the watchdog goes on
                log.exception("the watchdog of PostgreSQL's answers failed")

    def look(self, now: float) -> None:
        """Cut each connection seen in one unanswered round trip since at least its deadline
        ago (reading only this module's attributes: never libpq's state, which the owner's
        thread may be changing). Time this process did not run (stopped, suspended, starved:
        two looks further apart than twice the period) is not counted as the server's: the
        answer may be waiting in the socket for a thread that did not run either."""
        last, self._last_look = self._last_look, now
        paused = 0.0 if last is None or now - last <= 2 * self.between_looks else now - last
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            asked = conn.asked
            within = conn.answer_within
            if asked is None or within is None or conn.cut_after is not None:
                conn._seen = None
            elif conn._seen is not asked:
                conn._seen, conn._seen_at = asked, now
            else:
                conn._seen_at += paused
                if now - conn._seen_at >= within:
                    conn.cut_after = within
                    _shut_down(conn)

    def forget(self) -> None:
        """(In a forked child) the parent's connections are not this process's to cut."""
        self._lock = threading.Lock()
        self._conns = weakref.WeakSet()
        self._thread = None


def _shut_down(conn: Connection) -> None:
    """Shut ``conn``'s socket down (both ways), if its descriptor still names that socket:
    its waiter reads the connection's end. The descriptor stays open (libpq's to close)."""
    if conn._socket is None:
        return
    fileno, inode = conn._socket
    try:
        duplicate = os.dup(fileno)
    except OSError:  # closed meanwhile
        return
    try:
        found = os.fstat(duplicate)
        if found.st_ino != inode or not stat.S_ISSOCK(found.st_mode):
            return  # closed, its number reused by another file
        with socket.socket(fileno=duplicate) as sock:  # closes the duplicate
            duplicate = -1
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        if duplicate >= 0:
            os.close(duplicate)


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog.forget)
