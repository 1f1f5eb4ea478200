"""A worker's presence: other processes learn at once that it died, not a lease TTL later.

A process that leases runs for a worker holds a session-level advisory lock keyed by the
worker's id (``PRESENCE_KEY``) on a connection of its own, for as long as the store is open.
PostgreSQL releases a session's locks when the session ends: when the process is killed, its
connections close and the lock is gone within moments. A lease taken while the lock is held
gets a token marked ``p:<epoch>:`` (``token_prefix``); another worker's ``lease_due`` treats
such a lease whose owner holds no presence lock as expired (``DEAD_OWNERS``), so a killed
worker's runs are taken over at the next poll instead of when their leases expire.

A restart of the server, or a crash of any one backend (after which the server ends every
session and reinitializes), makes every worker lose its lock at once, live ones too; a live
worker takes it again at its next poll. ``<epoch>`` (``_lease_queries.PRESENCE_EPOCH``) tells those
apart: the later of the server's start and the last reset of its shared statistics (which a
crash resets; a clean restart keeps them, and changes the start). A lease taken under another
epoch than the server's now is an ordinary lease, taken over only when it expires, never
because its owner has not polled since the reset (which made step bodies of live workers run
twice). The worker asking must hold its own lock, so one that lost it judges nobody until it
has taken it again; it never counts itself among the dead. A manual reset of the shared
statistics makes the leases of the moment wait for their expiry: slower, never wrong.

What it does not change: a worker that stops (SIGSTOP), hangs or is partitioned from the
database keeps its session, so its leases still expire only after the TTL, and a commit whose
lease was taken over is still refused (fencing on the token). When the lock is lost while the
process lives and the server does not restart (its presence connection dropped) its leases may
be taken over early, as a zombie's would after the TTL: the step bodies it was executing may
run again elsewhere, their commits are refused. A lease of a worker that could not take its
lock (another live session holds it: the same worker id in two processes) is an ordinary lease.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Mapping
from typing import Any

import psycopg

from stepline.store.postgres import _answers
from stepline.store.postgres._database import CLIENT_ENCODING
from stepline.store.postgres._lease_queries import PRESENCE_EPOCH

PRESENCE_KEY = "stepline-worker\x1f"  # + worker id: the advisory lock's name
# whether the lock was taken, and the prefix of the tokens of leases taken while it is held
_LOCK = f"SELECT pg_try_advisory_lock(hashtextextended(%s, 0)), {PRESENCE_EPOCH}"

log = logging.getLogger("stepline.store.postgres")


class Presence:
    """This process's presence locks, one per worker id it leases for."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self._url = url
        # libpq's, beside the URL's (link_options), and its deadline (_answers.connect)
        # libpq options of its session: the store's (its connect timeout, link options)
        self._options = {"connect_timeout": 5, **(options or {})}
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._prefix = ""  # PRESENCE_EPOCH when this connection took its locks
        self._lock = threading.Lock()

    def token_prefix(self, worker_id: str) -> str:
        """The prefix of the token of a lease taken now for ``worker_id``: ``p:<start>:`` when
        this process holds the worker's presence lock (taking it if it can, on a connection of
        its own opened the first time), "" when it cannot be taken now."""
        with self._lock:
            try:
                conn = self._connection()
                if worker_id in self._held:
                    return self._prefix
                row = conn.execute(_LOCK, (PRESENCE_KEY + worker_id,)).fetchone()
            except psycopg.Error as exc:
                log.warning("presence: %s", exc)
                self._drop()
                return ""
            if row is not None and row[0]:
                self._held.add(worker_id)
                self._prefix = str(row[1])
                return self._prefix
            return ""

    def held_prefix(self, worker_id: str) -> str | None:
        """``token_prefix`` without waiting: the prefix while this process holds the worker's
        lock on a session that looks alive (nothing to read on it: a poll, no round trip),
        else None (``token_prefix`` then, where it may wait)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._conn
            if conn is None or conn.closed or worker_id not in self._held or _readable(conn):
                return None
            return self._prefix
        finally:
            self._lock.release()

    def issued(self, worker_id: str, token: str) -> bool:
        """Whether ``token`` is of a lease taken under this process's presence lock of
        ``worker_id`` (as it last knew it: no wait, no look at the session). A process running
        a worker id whose lock another process holds (the same id twice) issued no such token."""
        held, prefix = worker_id in self._held, self._prefix
        return held and bool(prefix) and token.startswith(prefix)

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not _readable(conn):
            return conn  # an idle session receives nothing while it lives
        self._drop()  # closed, ended by the server, or told something: start again
        self._conn = conn = _answers.connect(
            self._url,
            autocommit=True,
            client_encoding=CLIENT_ENCODING,
            **self._options,
        )
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()  # the locks went with the session
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Release every presence lock (ending the session)."""
        with self._lock:
            self._drop()


def _readable(conn: psycopg.Connection[Any]) -> bool:
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)
