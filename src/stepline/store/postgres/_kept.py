"""The connection one event loop keeps for its commits (``PostgresStore.commit_on_loop``), its
socket watched by the loop for good.

A commit on the loop used to take an idle connection of the read pool, register its socket with
the loop's selector for the reply (``add_reader``), remove it and give the connection back: per
step, the selector's registration and removal and the pool's take and give-back (~740 Python
bytecodes, a tenth of a step's). A loop now keeps the connection it takes
(``LoopConnections.take``) with a reader registered once: a round trip's wait arms it
(``arm``, as ``stepline._driven.Watch``), and the reader resumes that round trip.

One loop at a time keeps one (the worker's, whose steps commit one after the other); a commit
of another loop, or beside the kept connection while it is busy (``take`` returns None), takes
an idle pooled connection for itself, as before. It is kept only while the pool has more to
give: another idle connection, or room to open one (a pool of one connection is never pinned:
the writer thread's transactions and the reads need it).

The connection goes back to its pool, its reader removed (``LoopConnections.drop``):
- when its loop shuts down: ``asyncio.run`` closes the loop's async generators first
  (``shutdown_asyncgens``), the one the connection's life is tied to among them (``_life``);
- when its loop closed without that, or was dropped unclosed (it is held weakly): at the next
  take by another loop, or at the store's ``close``;
- after a commit that left it other than idle (an error, a cancelled round trip: closed,
  the pool replaces it);
- when the server sends something unasked while it is idle (its end, once it ended the
  session: a restart), closed: the pool replaces it, as it would a broken idle connection.
A commit in flight keeps it until it ends (``closing``: the shutdown or the store's ``close``
came meanwhile): its reply still resumes it.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import Any

import psycopg
import psycopg_pool

from stepline import _readers
from stepline.store.postgres import _database
from stepline.store.postgres._statements import _quiet

_READ = 1  # the readiness a resumed wait is told (``_driven``'s bits)


class Kept:
    """The loop's connection, its reader registered (``_readable``) while it is kept."""

    __slots__ = (
        "_life",
        "_poller",
        "_renews",
        "_resume",
        "busy",
        "closing",
        "conn",
        "loop",
        "pool",
        "socket",
    )

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        pool: psycopg_pool.ConnectionPool[Any],
        loop: asyncio.AbstractEventLoop,
        owner: LoopConnections,
    ) -> None:
        self.conn = conn
        self.pool = pool
        self.loop = weakref.ref(loop)  # a loop dropped unclosed is collected (never held here)
        self.socket = conn.pgconn.socket
        self.busy = False  # a commit uses it
        self.closing = False  # given back once the commit in flight ends
        self._resume: Callable[[int], object] | None = None
        self._poller = _readers.poller(self.socket)
        self._renews = _readers.drops_readers(loop)  # uvloop: see _readable
        loop.add_reader(self.socket, self._readable, owner)  # NotImplementedError: cannot
        self._life = _life(self, owner)
        _started(self._life)

    def arm(self, resume: Callable[[int], object]) -> None:
        """Call ``resume(1)`` once the socket is readable (``_driven.Watch``)."""
        self._resume = resume

    def disarm(self) -> None:
        self._resume = None

    def quiet(self) -> bool:
        """``_outcomes._quiet`` of the connection, its socket looked at by a poll object made
        once (True: open, nothing to read; False: look again, ``_quiet``)."""
        poller = self._poller
        if poller is None or self.conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            return False
        try:
            return not poller.poll(0)
        except OSError:
            return False

    def _readable(self, owner: LoopConnections) -> None:
        """The socket is readable: the armed wait resumed; nothing while a commit holds the
        connection unarmed (its next wait is told: the socket stays readable); the connection
        given back if the server ended its session while it was idle. On a loop that drops a
        reader of a socket in error (uvloop), registered again while the socket has ended
        (``_readers``): a reset told once, while unarmed or to a wait that read the server's
        last message and waits on, was never told again, and the commit waited forever; and
        at the loop's next turn too: a writer told of the error with it (a commit's write that
        waits for room) clears it on uvloop."""
        resume = self._resume
        if resume is not None:
            self._resume = None
            resume(_READ)
        elif not self.busy and not _quiet(self.conn):
            # unasked, while idle: the server ended the session (its end waits to be read)
            owner.drop(self, ended=True)
            return
        if self._renews and owner.keeps(self):
            loop = self.loop()
            if loop is not None:
                wanted = partial(self._wanted, owner)
                _readers.keep_reading(
                    loop, self.socket, self._poller, self._readable, owner, still=wanted
                )

    def _wanted(self, owner: LoopConnections) -> bool:
        """Whether the reader is still wanted: kept, its connection (its socket) not closed."""
        return owner.keeps(self) and not self.conn.closed


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


def _spare(pool: psycopg_pool.ConnectionPool[Any]) -> bool:
    """Whether ``pool`` has more to give than one idle connection: another idle one, or room
    to open one (its lock and counts: as ``_database.take_idle`` reads them)."""
    with pool._lock:
        return len(pool._pool) >= 2 or pool._nconns < pool.max_size


class LoopConnections:
    """The connection one event loop keeps (``Kept``), of a store's read pool."""

    def __init__(self) -> None:
        self._kept: Kept | None = None
        self._lock = threading.Lock()  # guards _kept's change (loops of several threads)

    def keeps(self, kept: Kept) -> bool:
        """Whether ``kept`` is the connection kept (not given back)."""
        return self._kept is kept

    def take(
        self, loop: asyncio.AbstractEventLoop, pool: psycopg_pool.ConnectionPool[Any]
    ) -> Kept | None:
        """``loop``'s connection, marked busy (``done`` when the commit ended): the one it
        keeps, or an idle one of ``pool`` it keeps from now on. None: it is busy, another
        loop keeps one, the pool has none to spare, or the loop cannot wait on a socket (the
        caller takes one of its own for the commit, or refuses)."""
        kept = self._kept
        if kept is not None and kept.loop() is loop:
            if kept.busy:
                return None
            kept.busy = True
            return kept
        kept = self._new(loop, pool)
        if kept is not None:
            kept.busy = True
        return kept

    def _new(
        self, loop: asyncio.AbstractEventLoop, pool: psycopg_pool.ConnectionPool[Any]
    ) -> Kept | None:
        with self._lock:
            old = self._kept
            if old is not None:
                keeper = old.loop()
                if keeper is not None and not keeper.is_closed():
                    return None  # another loop's, alive
        if old is not None:  # its loop closed without shutting down, or was dropped
            self.drop(old)
        if not _spare(pool):
            return None
        conn = _database.take_idle(pool)
        if conn is None:
            return None
        try:  # its reader's callbacks in an empty context (never the caller's)
            kept = contextvars.Context().run(Kept, conn, pool, loop, self)
        except NotImplementedError:  # no add_reader (a ProactorEventLoop)
            pool.putconn(conn)
            return None
        with self._lock:
            if self._kept is None:
                self._kept = kept
                return kept
        _ended(kept._life)  # another loop's thread kept one meanwhile: this one goes back
        self._give_back(kept, loop)
        return None

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
            if self._kept is not kept:
                return  # given back already
            self._kept = None
        if not from_life:
            _ended(kept._life)
        self._give_back(kept, kept.loop(), ended)

    @staticmethod
    def _give_back(kept: Kept, loop: asyncio.AbstractEventLoop | None, ended: bool = False) -> None:
        if loop is not None and not loop.is_closed():
            loop.remove_reader(kept.socket)
        conn = kept.conn
        if not conn.closed and (
            ended
            or kept.busy
            or conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            conn.close()
        kept.pool.putconn(conn)

    def close(self) -> None:
        """Give the connection back (the store closes), in its loop's thread if that loop runs
        in another; a commit in flight on it keeps it until it ends (``closing``)."""
        kept = self._kept
        if kept is None:
            return
        loop = kept.loop()
        if loop is not None and loop.is_running() and _running() is not loop:
            try:
                loop.call_soon_threadsafe(self._drop_idle, kept)
                return
            except RuntimeError:  # closed meanwhile
                pass
        self._drop_idle(kept)

    def _drop_idle(self, kept: Kept) -> None:
        """``drop`` unless a commit is in flight on it: then once it ends (``done``)."""
        if kept.busy:
            kept.closing = True
        else:
            self.drop(kept)


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
