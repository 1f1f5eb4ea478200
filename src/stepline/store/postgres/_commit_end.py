"""The end of a PostgreSQL write transaction (``PostgresStore``'s): the statements sent with its
``COMMIT`` (its ``NOTIFY``, and whether the commit waits for its WAL's flush: ``last_statements``),
and, for a transaction committed on an event loop that asked to wait for its flush after its
commit (``FlushesLater``), the connection that flush is sent on (``last_on_loop``) and the flush
itself (``flushed``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool

from stepline.errors import StoreUnavailable
from stepline.store.postgres import _database, _pipeline
from stepline.store.postgres._statements import FLUSHED, _quiet
from stepline.store.postgres.wakeups import names_runs, notify

if TYPE_CHECKING:
    from stepline.store.postgres.tx import PostgresTx

# for this transaction only; set_config, not SET LOCAL: an optimistic transaction sent in one
# round trip has no BEGIN (Statements.transaction), where SET LOCAL would warn
NO_FLUSH_WAIT = "SELECT set_config('synchronous_commit', 'off', true)"


def last_statements(tx: PostgresTx) -> list[tuple[str, Any, str | None]]:
    """Sent with the COMMIT: the NOTIFY (delivered when, and only if, the transaction commits;
    naming the new runs when they are the only work it made: ``wakeups.notify``), and for a
    transaction that need not be on disk when acknowledged (``PostgresTx.durable``), a commit
    that does not wait for its WAL to be flushed. One that names its new runs does not wait
    either (``notify``'s settings say so), and, durable, waits for the flush after its commit
    (``Statements.flush_after``): its notification goes out without waiting for the disk
    (``wakeups``)."""
    last: list[tuple[str, Any, str | None]] = []
    if tx.made_work or tx.new_runs:
        notifying = notify(tx.new_runs, tx.made_work)
        last += notifying
        if names_runs(notifying):  # notified at its commit, flushed after
            if tx.durable:
                tx.statements.flush_after = True
            return last
    flushed = tx.flushed
    if not tx.durable:
        last.append((NO_FLUSH_WAIT, None, None))
    elif flushed is not None and flushed.asked:  # the flush waited for after the commit
        last.append((NO_FLUSH_WAIT, None, None))
        flushed.owed = True
    return last


def last_on_loop(
    tx: PostgresTx,
    loop: asyncio.AbstractEventLoop,
    reserved: list[psycopg.Connection[Any]],
    pool: psycopg_pool.ConnectionPool[Any],
) -> list[tuple[str, Any, str | None]]:
    """``last_statements`` of a transaction committed on ``loop``. One that asked to wait for
    its flush after its commit (``FlushesLater``) does so only with a connection for that flush
    (``FLUSHED``) taken now, into ``reserved``: an idle one of ``pool`` (the store's read pool),
    with nothing to read, whose socket the loop waits on (the loop's own is then free for the
    next commit at once). None: its commit waits for its flush, as before."""
    flushed = tx.flushed
    if flushed is not None and flushed.asked:
        conn = _database.take_idle(pool)
        if conn is not None and (not _quiet(conn) or not _pipeline.loop_waits(loop, conn)):
            if not _quiet(conn):
                conn.close()  # most likely ended by the server: the pool replaces it
            pool.putconn(conn)  # never waits: idle, or closed
            conn = None
        if conn is None:
            flushed.asked = False
        else:
            reserved.append(conn)
    return last_statements(tx)


async def flushed(
    conn: psycopg.Connection[Any], pool: psycopg_pool.ConnectionPool[Any], label: str
) -> None:
    """``FLUSHED`` on ``conn`` (an idle connection of ``pool``, given back): its commit, after
    the transaction's, waits for the WAL's flush past both. Its prepared statement dropped
    behind psycopg's back (``_database.DROPPED``: nothing done), it is sent again, prepared
    anew; failed otherwise, the transaction is committed, perhaps not on disk:
    ``StoreUnavailable`` (naming the database ``label``)."""
    try:
        for again in (True, False):
            try:
                await _pipeline.send_all_async(conn, [(FLUSHED, None)])
                return
            except psycopg.Error as exc:
                _database.forget_dropped(conn, exc)  # prepared anew at its next use
                if not (again and exc.sqlstate == _database.DROPPED):
                    raise StoreUnavailable(
                        f"committed, but whether it is on disk is unknown: {exc!r}", label
                    ) from exc
    except BaseException:
        if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()  # busy mid-protocol (cancelled): the pool replaces it
        raise
    finally:
        pool.putconn(conn)  # never waits: idle, or closed (replaced)
