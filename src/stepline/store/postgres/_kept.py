"""The connection an event loop keeps for its commits (``PostgresStore.commit_on_loop``), its
socket watched by the loop for good.

A commit on the loop used to take an idle connection of the read pool, register its socket with
the loop's selector for the reply (``add_reader``), remove it and give the connection back: per
step, the selector's registration and removal and the pool's take and give-back (~740 Python
bytecodes, a tenth of a step's). A loop now keeps the first connection it takes
(``LoopConnections.take``) with a reader registered once: a round trip's wait arms it
(``arm``, as ``stepline._driven.Watch``), and the reader resumes that round trip.

The connection goes back to its pool, its reader removed (``LoopConnections.drop``):
- when its loop shuts down: ``asyncio.run`` closes the loop's async generators first
  (``shutdown_asyncgens``), the one the connection's life is tied to among them (``_life``);
  a commit then in flight keeps it until it ends (the shutdown runs the loop on);
- when its loop closed without that: at the next take of a new connection by any loop, or at
  the store's ``close``;
- after a commit that left it other than idle (an error, a cancelled round trip: closed,
  the pool replaces it);
- when the server sends something unasked while it is idle (its end, once it ended the
  session: a restart), closed: the pool replaces it, as it would a broken idle connection.
A commit on the loop while its connection is busy (a lease by name beside a step's commit)
takes an idle pooled connection for itself, as before (``take`` returns None).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import psycopg
import psycopg_pool

from stepline.store.postgres import _database
from stepline.store.postgres._statements import _quiet

_READ = 1  # the readiness a resumed wait is told (``_driven``'s bits)


class Kept:
    """One loop's connection, its reader registered (``_readable``) while it is kept."""

    __slots__ = ("_life", "_resume", "busy", "closing", "conn", "loop", "pool", "socket")

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        pool: psycopg_pool.ConnectionPool[Any],
        loop: asyncio.AbstractEventLoop,
        owner: LoopConnections,
    ) -> None:
        self.conn = conn
        self.pool = pool
        self.loop = loop
        self.socket = conn.pgconn.socket
        self.busy = False  # a commit uses it
        self.closing = False  # its loop shuts down: given back once the commit in flight ends
        self._resume: Callable[[int], object] | None = None
        loop.add_reader(self.socket, self._readable, owner)  # NotImplementedError: cannot
        self._life = _life(self, owner)
        _started(self._life)

    def arm(self, resume: Callable[[int], object]) -> None:
        """Call ``resume(1)`` once the socket is readable (``_driven.Watch``)."""
        self._resume = resume

    def disarm(self) -> None:
        self._resume = None

    def _readable(self, owner: LoopConnections) -> None:
        resume = self._resume
        if resume is not None:
            self._resume = None
            resume(_READ)
        elif not self.busy and not _quiet(self.conn):
            # unasked, while idle: the server ended the session (its end waits to be read)
            owner.drop(self, ended=True)


async def _life(kept: Kept, owner: LoopConnections) -> AsyncGenerator[None, None]:
    """An async generator of ``kept``'s loop (its first step registered it with the loop's
    hooks): the loop's shutdown (``shutdown_asyncgens``) closes it, giving ``kept`` back."""
    try:
        yield
    finally:
        if kept.busy:
            kept.closing = True  # LoopConnections.done gives it back
        else:
            owner.drop(kept, from_life=True)


def _started(life: AsyncGenerator[None, None]) -> None:
    """``life`` run to its ``yield`` (registered with the running loop's async generators)."""
    try:
        life.asend(None).send(None)
    except StopIteration:
        return
    raise AssertionError("a loop connection's life did not stop at its yield")


def _ended(life: AsyncGenerator[None, None]) -> None:
    """``life`` closed here, its ``finally`` run (given back already: it does nothing), so that
    it never asks its loop, maybe closed, to close it (the loop's finalizer hook)."""
    try:
        life.aclose().send(None)
    except StopIteration:
        return


class LoopConnections:
    """The connection each event loop keeps (``Kept``), of a store's read pool."""

    def __init__(self) -> None:
        self._kept: dict[asyncio.AbstractEventLoop, Kept] = {}
        self._lock = threading.Lock()  # guards _kept's changes (loops of several threads)

    def take(
        self, loop: asyncio.AbstractEventLoop, pool: psycopg_pool.ConnectionPool[Any]
    ) -> Kept | None:
        """``loop``'s connection, marked busy (``done`` when the commit ended): the one it
        keeps, or an idle one of ``pool`` it keeps from now on. None: it is busy, or none is
        idle, or the loop cannot wait on a socket (the caller takes its own, or refuses)."""
        kept = self._kept.get(loop)
        if kept is None:
            kept = self._new(loop, pool)
        elif kept.busy:
            return None
        if kept is not None:
            kept.busy = True
        return kept

    def _new(
        self, loop: asyncio.AbstractEventLoop, pool: psycopg_pool.ConnectionPool[Any]
    ) -> Kept | None:
        self._give_back_closed()
        conn = _database.take_idle(pool)
        if conn is None:
            return None
        try:  # its reader's callbacks in an empty context (never the caller's)
            kept = contextvars.Context().run(Kept, conn, pool, loop, self)
        except NotImplementedError:  # no add_reader (a ProactorEventLoop)
            pool.putconn(conn)
            return None
        with self._lock:
            self._kept[loop] = kept
        return kept

    def done(self, kept: Kept) -> None:
        """A commit on ``kept`` ended: kept for the next one, or given back (see the module)."""
        kept.busy = False
        conn = kept.conn
        if (
            kept.closing
            or conn.closed
            or conn.broken
            or conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            self.drop(kept)

    def drop(self, kept: Kept, from_life: bool = False, ended: bool = False) -> None:
        """Give ``kept`` back to its pool, its reader removed, in its loop's thread (or once
        its loop no longer runs); closed first (the pool replaces it) unless idle, or when
        the server ``ended`` it (its end unread, it looks idle)."""
        with self._lock:
            if self._kept.get(kept.loop) is not kept:
                return  # given back already
            del self._kept[kept.loop]
        if not kept.loop.is_closed():
            kept.loop.remove_reader(kept.socket)
        if not from_life:
            _ended(kept._life)
        conn = kept.conn
        if not conn.closed and (
            ended
            or kept.busy
            or conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            conn.close()
        kept.pool.putconn(conn)

    def _give_back_closed(self) -> None:
        """Give back the connections of loops that closed without shutting down (no
        ``shutdown_asyncgens``)."""
        for kept in [kept for loop, kept in list(self._kept.items()) if loop.is_closed()]:
            self.drop(kept)

    def close(self) -> None:
        """Give every connection back (the store closes): in its loop's thread if that loop
        runs in another."""
        for kept in list(self._kept.values()):
            loop = kept.loop
            if loop.is_closed() or not loop.is_running() or _running() is loop:
                self.drop(kept)
                continue
            try:
                loop.call_soon_threadsafe(self.drop, kept)
            except RuntimeError:  # closed meanwhile
                self.drop(kept)


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
