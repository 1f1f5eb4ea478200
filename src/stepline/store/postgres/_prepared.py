"""A statement prepared once per connection and committed on the event loop with libpq's own
calls: a lone step's commit (``_alone.commit_steps``), without psycopg's adaptation and cache.

``_pipeline.send_all_async`` sends any statements: it adapts each parameter through psycopg
(looks up a dumper per value), asks psycopg's prepared-statement cache what to send and tells it
what came back, and groups the results per command. A lone step's commit is always the same
statement with parameters of known types, so here (``commit_prepared``): the caller encodes its
values to bytes itself (``_alone.one_step_values``: binary format, the OIDs ``Prepared.types``
declares; a value not of its record's type goes the usual lane), the statement is parsed once
per connection under a name of its own, and the round trip is libpq's
``send_query_prepared`` and ``pipeline_sync`` on the connection the loop keeps (``_kept``, its
socket looked at first by a poll object made once: ``Kept.quiet``), its reply read with
``consume_input`` / ``get_result`` in the very callback of the loop's reader that says the
socket is readable (in the writer's ``Driven``; under a task, ``_pipeline._drive``).

Where its name is kept: in psycopg's own cache of the connection's prepared statements
(``conn._prepared``), under a key psycopg never makes. So whatever makes psycopg drop every
prepared statement of the connection (a ``ROLLBACK``, ``DROP`` or ``DISCARD ALL`` it saw: its
``DEALLOCATE ALL``) drops this name too, and one evicted from that cache is deallocated by psycopg
and parsed anew here under a new name. While a deallocation waits to be sent (``_to_flush``), or
prepared statements are off (``prepare_threshold``), nothing is sent here: the caller commits
the usual way, which runs the deallocation first. A new connection (a reconnect: the pool's) has
an empty cache: the statement is parsed again with its first commit, in the same round trip. A
name the server no longer knows (deallocated behind psycopg's back: 26000) fails that commit
as any refused statement (nothing committed) and is forgotten: parsed anew at the next.

A statement may name another, without parameters, sent right before it in the same pipeline
(``Prepared.before``: the pass's first commit after ``_handoffs.GENERIC``), prepared the same
way; the two are one implicit transaction, and a failure of either is the commit's.

The outcome rules are ``Statements.commit_statement_on_loop``'s, applied to the same
``Statements`` (``maybe_committed``, ``stale``, ``statement_failed``): the statement is sent
without ``BEGIN`` in a pipeline, committed by its sync; a statement's error means the sync
rolled it back (a lost lease's hold fails: nothing committed), an error of the sync itself is the
commit's, one of the connection after the send leaves the outcome unknown, a cancelled round
trip too (its connection, busy mid-protocol, is closed).
"""

from __future__ import annotations

import itertools
from collections.abc import Coroutine, Generator, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.waiting import Ready, Wait

from stepline._driven import SocketWait, Watch, driving
from stepline.store.postgres import _pipeline
from stepline.store.postgres._answers import unanswered
from stepline.store.postgres._kept import Kept
from stepline.store.postgres._outcomes import _maybe_committed_when_interrupted
from stepline.store.postgres._statements import Statements

# the OIDs of the types a prepared statement's parameters are declared with here
TEXT, BYTEA, INT4, FLOAT8 = 25, 17, 23, 701
_OK = pq.ExecStatus.COMMAND_OK
_ROWS = pq.ExecStatus.TUPLES_OK
_FAILED = (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.PIPELINE_ABORTED)
_DONE = (_ROWS, _OK)  # a statement's success: rows (ONE_STEP's hold) or none (ONE_FRESH_STEP)
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_CONNECTED = pq.ConnStatus.OK
_IDLE = pq.TransactionStatus.IDLE
_UNKNOWN_NAME = "26000"  # invalid_sql_statement_name: no prepared statement of that name
_READ, _WRITE = 1, 2  # the bits of a socket wait (``_driven``)
_names = itertools.count()  # a name parsed anew is never one a deallocation may still drop


class Prepared:
    """``query`` (psycopg's ``%s`` placeholders), prepared with its parameters declared of
    ``types`` (OIDs: the values sent are those types' binary forms). ``before``: a statement
    without parameters sent (prepared too) right before it in its pipeline, in its implicit
    transaction (``_alone``'s: its generic plan chosen, ``_handoffs.GENERIC``)."""

    __slots__ = ("_key", "_text", "before", "formats", "types")
    types: tuple[int, ...]
    before: Prepared | None

    def __init__(self, query: str, types: Sequence[int], before: Prepared | None = None) -> None:
        shape = _pipeline._shape(query, "utf-8", len(types))
        if shape is None or len(shape[1]) != len(types):
            raise ValueError("not a statement of positional parameters, one per type")
        if before is not None and (before.types or before.before is not None):
            raise ValueError("a statement sent before another has no parameters of its own")
        self._text = shape[0]
        self.types = tuple(types)
        self.formats = [1] * len(types)  # binary, every one
        self._key = (b"stepline prepared: " + self._text, ())  # its psycopg cache entry
        self.before = before

    def name_on(self, conn: psycopg.Connection[Any]) -> bytes | None:
        """The name it is prepared under on ``conn`` (None: not prepared there)."""
        name: bytes | None = conn._prepared._names.get(self._key)
        return name


async def commit_prepared(
    statements: Statements, prepared: Prepared, values: list[bytes | None]
) -> bool:
    """``statements.commit_statement_on_loop`` of ``prepared`` with ``values`` (each its type's
    binary form, or None for NULL), on ``statements``' connection, sent as the module says.
    False: nothing sent, nothing changed (psycopg has prepared statements to deallocate
    first, they are off, another thread holds the connection, or it is not idle): commit it
    the usual way."""
    conn = statements.conn
    pgconn = conn.pgconn
    cache = conn._prepared
    if cache._to_flush or cache.prepare_threshold is None or pgconn.transaction_status != _IDLE:
        return False
    if pgconn.parameter_status(b"client_encoding") != b"UTF8":  # texts are sent as UTF-8
        return False
    names = cache._names
    before = prepared.before
    parts = [(prepared, names.get(prepared._key), values)]
    if before is not None:
        parts.insert(0, (before, names.get(before._key), []))
    statements.on_loop = True
    watch = statements.watch
    try:
        if not (type(watch) is Kept and watch.quiet()):  # else looked at as any connection:
            statements._check_connection()  # WouldBlock (closed) when it has something to read
        if not conn.lock.acquire(blocking=False):
            return False
        await _outcome(statements, _sent(conn, pgconn, cache, parts, watch))
    except BaseException:
        statements._ended_on_loop()
        raise
    return True


async def commit_kept(
    statements: Statements, kept: Kept, prepared: Prepared, values: list[bytes | None]
) -> bool:
    """``commit_prepared`` in its usual case, with less around it: ``prepared`` prepared on
    ``kept``'s connection (the one the loop keeps, ``statements``') before, with no statement
    before it, the socket quiet (``Kept.quiet``), nothing for
    psycopg to deallocate first. The same round trip and outcome rules. False: not that case,
    nothing sent, nothing changed (``commit_prepared`` then)."""
    conn = kept.conn
    pgconn = conn.pgconn
    cache = conn._prepared
    name: bytes | None = cache._names.get(prepared._key)
    if (
        name is None
        or prepared.before is not None
        or cache._to_flush
        or cache.prepare_threshold is None
        or pgconn.transaction_status != _IDLE
        or pgconn.parameter_status(b"client_encoding") != b"UTF8"  # texts are sent as UTF-8
        or not kept.quiet()
        or not conn.lock.acquire(blocking=False)
    ):
        return False
    statements.on_loop = True
    try:
        await _outcome(statements, _sent_one(conn, pgconn, cache, prepared, name, values, kept))
    except BaseException:
        statements._ended_on_loop()
        raise
    return True


async def _outcome(
    statements: Statements, sending: Coroutine[Any, Any, psycopg.Error | None]
) -> None:
    """``sending``'s round trip on ``statements``' connection, its lock held (released here),
    under the outcome rules (see the module): raises its error, ``statements`` told."""
    conn = statements.conn
    statements.round_trips += 1
    conn.asked = sending  # type: ignore[attr-defined]  # this round trip's (_answers)
    try:
        failed = await sending
    except psycopg.Error as exc:
        _failed(statements, exc)
        said = unanswered(conn, exc)  # the watchdog's cut, said as such
        if said is exc:
            raise
        raise said from exc
    except BaseException:  # cancelled during the round trip: the reply is lost
        statements.maybe_committed = _maybe_committed_when_interrupted(conn)
        raise
    finally:
        conn.asked = None  # type: ignore[attr-defined]
        conn.lock.release()
    if failed is not None:
        _failed(statements, failed)
        raise failed


def _failed(statements: Statements, error: psycopg.Error) -> None:
    """What ``Statements._sent_async`` and ``_committed_async`` make of the round trip's
    ``error`` (the statement sent without ``BEGIN``: its pipeline's sync commits it)."""
    conn = statements.conn
    statements.statement_failed = not (conn.broken or _pipeline.at_sync(error))
    statements._failed_trip(error)
    statements.spoiled = True
    statements._commit_failed(error, True)


async def _sent(
    conn: psycopg.Connection[Any],
    pgconn: pq.abc.PGconn,
    cache: Any,
    parts: list[tuple[Prepared, bytes | None, list[bytes | None]]],
    watch: Watch | None,
) -> psycopg.Error | None:
    """Send each of ``parts`` (a statement, the name it is prepared under on ``conn`` or None:
    parsed first, its values) in order and the sync, read every result up to the sync's; the
    first error, or None."""
    if len(parts) == 1:
        prepared, name, values = parts[0]
        if name is not None:  # the usual: one statement, prepared before
            return await _sent_one(conn, pgconn, cache, prepared, name, values, watch)
    if pgconn.status != _CONNECTED:
        raise psycopg.OperationalError("the connection is closed")
    sent: list[tuple[Prepared, bytes, bool]] = []  # each statement, its name, parsed here
    for prepared, name, _ in parts:
        sent.append(
            (prepared, b"_stepline_%d" % next(_names), True)
            if name is None
            else (prepared, name, False)
        )
    pgconn.enter_pipeline_mode()
    try:
        for (prepared, name, parse), (_, _, values) in zip(sent, parts, strict=True):
            if parse:
                pgconn.send_prepare(name, prepared._text, param_types=prepared.types)
            pgconn.send_query_prepared(name, values, param_formats=prepared.formats)
    except BaseException:  # libpq could not buffer it: never sync (commit) a part
        pgconn.finish()  # the server rolls back what it got; the connection is broken
        raise
    return _failure(conn, cache, sent, await _synced(pgconn, watch))


async def _sent_one(
    conn: psycopg.Connection[Any],
    pgconn: pq.abc.PGconn,
    cache: Any,
    prepared: Prepared,
    name: bytes,
    values: list[bytes | None],
    watch: Watch | None,
) -> psycopg.Error | None:
    """``_sent`` of one statement prepared on ``conn`` before, under ``name``."""
    if pgconn.status != _CONNECTED:
        raise psycopg.OperationalError("the connection is closed")
    pgconn.enter_pipeline_mode()
    try:
        pgconn.send_query_prepared(name, values, param_formats=prepared.formats)
    except BaseException:  # libpq could not buffer it: never sync (commit) it
        pgconn.finish()  # the server rolls back what it got; the connection is broken
        raise
    results = await _synced(pgconn, watch)
    if len(results) == 1 and results[0].status in _DONE:
        return None
    return _failure(conn, cache, [(prepared, name, False)], results)


async def _synced(pgconn: pq.abc.PGconn, watch: Watch | None) -> list[pq.abc.PGresult]:
    """What is buffered sent with the pipeline's sync, every result read up to it
    (``_replies``), out of pipeline mode after."""
    pgconn.pipeline_sync()
    try:
        if driving():
            return await _replies_driven(pgconn, watch)
        return await _pipeline._drive(_replies(pgconn), pgconn.socket, watch)
    finally:
        if pgconn.status == _CONNECTED and not pgconn.is_busy():
            pgconn.exit_pipeline_mode()  # (a round trip cut off leaves it in)


def _failure(
    conn: psycopg.Connection[Any],
    cache: Any,
    sent: list[tuple[Prepared, bytes, bool]],
    results: list[pq.abc.PGresult],
) -> psycopg.Error | None:
    """The first error of ``results`` (a Parse's, a statement's, else the sync's: the implicit
    transaction's commit, marked ``at_sync``), or None: every statement succeeded. A statement
    parsed here is kept under its name once its Parse succeeded. Only an error result
    (FATAL_ERROR, or PIPELINE_ABORTED after one) says a statement failed and its sync rolled it
    back; any other result where a success was expected, or none, leaves its outcome unknown
    (an ``InterfaceError`` marked ``at_sync``), never read as rolled back."""
    at = 0
    failed: psycopg.Error | None = None
    failed_key = None
    for prepared, name, parsed in sent:
        if parsed:
            if len(results) <= at:
                return failed or _unknown(f"no result for a statement's Parse: {results}")
            status = results[at].status
            if status == _OK:
                cache._names[prepared._key] = name  # psycopg deallocates it with all of its own
            elif status not in _FAILED:
                return _unknown(f"an unexpected result for a statement's Parse: {results[at]}")
            elif failed is None:
                failed = _pipeline._error(conn, results[at])
            at += 1
        if len(results) <= at:
            return failed or _unknown(f"no result for the statement: {results}")
        status = results[at].status
        if failed is None and status not in _DONE:
            if status not in _FAILED:
                return _unknown(f"an unexpected result for the statement: {results[at]}")
            failed, failed_key = _pipeline._error(conn, results[at]), prepared._key
        at += 1
    if failed is None:
        if len(results) == at:
            return None
        # the sync's: the implicit transaction's commit
        failed = next(
            (_pipeline._error(conn, r) for r in results[at:] if r.status not in _pipeline._OK),
            psycopg.InterfaceError(f"unexpected results after the statement: {results[at:]}"),
        )
        setattr(failed, _pipeline._AT_SYNC, True)
    if failed.sqlstate == _UNKNOWN_NAME and failed_key is not None:
        cache._names.pop(failed_key, None)  # deallocated behind psycopg's back: parsed anew next
    return failed


def _unknown(why: str) -> psycopg.Error:
    """An error that leaves the commit's outcome unknown (marked as the sync's: the
    statement may have run and its sync committed it)."""
    error = psycopg.InterfaceError(why)
    setattr(error, _pipeline._AT_SYNC, True)
    return error


async def _replies_driven(pgconn: pq.abc.PGconn, watch: Watch | None) -> list[pq.abc.PGresult]:
    """``_replies`` in a ``Driven`` coroutine (``driving()``): each wait for the socket a
    ``SocketWait``, resumed by the loop's callback itself (``_pipeline._drive`` inlined)."""
    socket = pgconn.socket
    try:
        while pgconn.flush():
            if await SocketWait(socket, _READ | _WRITE, watch) & _READ:
                pgconn.consume_input()
        readable = SocketWait(socket, _READ, watch)
        results: list[pq.abc.PGresult] = []
        while True:
            while pgconn.is_busy():
                await readable
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:  # the end of one command's results
                continue
            if result.status == _SYNC:
                return results
            results.append(result)
    except OSError as exc:  # the socket closed under it, as psycopg's waits say it
        raise psycopg.OperationalError(f"connection socket closed: {exc}") from exc


def _replies(pgconn: pq.abc.PGconn) -> Generator[Wait, Ready, list[pq.abc.PGresult]]:
    """What is buffered written, then every result read up to the pipeline's sync (its own
    result not kept), in order: ``_pipeline._round_trip`` without grouping them by command."""
    while pgconn.flush():  # the server may answer before it has read everything: read too
        ready = yield Wait.RW
        if ready & Ready.R:
            pgconn.consume_input()
    results: list[pq.abc.PGresult] = []
    while True:
        while pgconn.is_busy():
            if (yield Wait.R):
                pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one command's results
            continue
        if result.status == _SYNC:
            return results
        results.append(result)
