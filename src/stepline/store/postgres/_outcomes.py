"""What a failed or interrupted commit may have done, and whether an idle connection is quiet:
the rules ``Statements`` applies to a transaction's commit round trip (moved out of
``_statements``, whose names re-export them)."""

from __future__ import annotations

import select
from typing import Any

import psycopg


def _quiet(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn``, idle, has nothing to read on its socket (a look without a round trip).
    The server sends nothing unasked on an idle connection that does not ``LISTEN``; one it
    ended (a restart, ``pg_terminate_backend``, a crashed backend) has that end waiting to be
    read: its error message, or the end of the stream the kernel of a closed socket sent. Such
    a connection, or one with anything else to read, is checked by a round trip before a
    ``COMMIT`` is sent on it (``transaction``). A connection cut off without its end reaching
    this machine (a network failure) looks quiet: its ``COMMIT``'s round trip then fails, and
    its outcome is unknown (``maybe_committed``), as for a connection lost during a commit."""
    if conn.closed or conn.broken:
        return False
    try:
        socket = conn.pgconn.socket
        if not hasattr(select, "poll"):
            # Windows has no poll: select (past its limit of sockets it raises ValueError)
            return not any(select.select([socket], [], [socket], 0))
        poller = select.poll()
        poller.register(socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return False


def _maybe_committed(conn: psycopg.Connection[Any], error: psycopg.Error) -> bool:
    """Whether a transaction whose ``COMMIT``'s round trip raised ``error`` may have committed.
    It did not when a statement before the ``COMMIT`` failed (the transaction is left in its
    failed state, the ``COMMIT`` was skipped), or when the server refused the ``COMMIT`` with
    an error that comes before a commit is flushed and goes on serving the connection. A
    broken connection, no SQLSTATE, or an error of class 57 (operator intervention: a backend
    terminated after its commit's flush, before its reply), 58 or XX may come after the
    flush."""
    if conn.broken or conn.closed:
        return True
    status = conn.pgconn.transaction_status
    if status == psycopg.pq.TransactionStatus.INERROR:
        return False
    state = error.sqlstate or ""
    return status != psycopg.pq.TransactionStatus.IDLE or state[:2] in ("", "08", "57", "58", "XX")


def _maybe_committed_when_interrupted(conn: psycopg.Connection[Any]) -> bool:
    """Whether a transaction whose ``COMMIT``'s round trip was interrupted (``KeyboardInterrupt``
    and the like, not an error of the connection) may have committed: psycopg cancels the
    statement in flight, too late for a commit already flushed, and the reply is lost with the
    interrupt. Only a transaction still open (``BEGIN`` sent, ``COMMIT`` not run: in it or in
    its failed state) surely did not; a connection idle again may have ended it either way (a
    transaction without ``BEGIN`` is committed or rolled back by its sync), and one that is
    broken or still busy is unknown."""
    if conn.broken or conn.closed:
        return True
    status = conn.pgconn.transaction_status
    return status not in (
        psycopg.pq.TransactionStatus.INTRANS,
        psycopg.pq.TransactionStatus.INERROR,
    )
