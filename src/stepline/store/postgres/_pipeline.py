"""One round trip's statements written at once, their results read once: a pipeline of our own.

psycopg's pipeline mode (``conn.pipeline()``) sends each statement as it is executed and reads
what came back each time (a send, a poll and a read per statement), and drives the pipeline's
entry, sync and exit each through its wait loop: a round trip cost this process about 130 µs
plus 20-30 µs a statement (a send's eight statements ~0.45 ms of CPU, the larger part of the
sender's share of an event's way to its first step). Here (``send_all``) the statements of a
round trip are buffered in libpq's pipeline mode, their parameters adapted by psycopg's own
query conversion, the sync appended and the whole buffer written; then every result is read in
order: the same protocol messages the server got from psycopg's pipeline (it executes each as it
arrives; a failed one aborts the rest up to the sync), at about a third of the CPU.

Prepared statements are psycopg's: its per-connection cache decides (a text executed five times
is prepared, named ``_pg3_N``) and is kept up to date with what each statement returned, as
psycopg's own pipeline does (a ``ROLLBACK`` or ``DROP`` makes it deallocate them all, which it
does after the round trip). So a statement is prepared once per connection whichever way it
is sent, and the generic plans ``lease_named`` asks for are kept.
A statement found gone from the server (26000: a pooler's ``DEALLOCATE ALL`` behind psycopg's
back) makes psycopg forget every name it prepared on the connection as the round trip ends
(``_database.forget_dropped``), whoever then catches the error (a lease by name alone made
again another way, a job that goes on): the connection's other statements, gone too, are
prepared anew at their next use instead of each failing once more.

This leans on three psycopg internals (``PostgresQuery``, the connection's ``_prepared``
cache, ``Prepare``), stable from psycopg 3.1 to 3.3; ``tests/store/test_pg_pipeline.py``
checks what it relies on.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from functools import partial
from operator import itemgetter
from typing import Any, TypeVar, cast

import psycopg
from psycopg import abc, errors, pq
from psycopg._preparing import Prepare
from psycopg._queries import (
    MAX_CACHED_STATEMENT_LENGTH,
    MAX_CACHED_STATEMENT_PARAMS,
    PostgresQuery,
    _query2pg,
)
from psycopg.adapt import Transformer
from psycopg.waiting import Ready, Wait

from stepline._driven import SocketWait, Watch, driving
from stepline.store.postgres._answers import unanswered
from stepline.store.postgres._database import forget_dropped

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any] | None
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)
_TUPLES, _SYNC = pq.ExecStatus.TUPLES_OK, pq.ExecStatus.PIPELINE_SYNC
_CONNECTED = pq.ConnStatus.OK
_Cached = tuple[Any, Prepare, bytes] | None  # (key, prepare?, name) to tell psycopg's cache
# per statement: its Parse sent first (psycopg's cache told if it failed), its new cache entry
_Sent = tuple[_Cached, _Cached]
_AT_SYNC = "_stepline_at_sync"  # set on an error of the sync (at_sync)


def send_all(conn: psycopg.Connection[Any], statements: Sequence[tuple[str, Params]]) -> Found:
    """Execute ``statements`` in order in one round trip; the rows of each (None for one that
    returned none). Every parameter is adapted before anything is sent: one that cannot be
    raises with nothing sent (so statements sent without ``BEGIN``, one transaction committed
    by the sync, are never committed in part). Raises the first failed statement's error
    (psycopg's class for its SQLSTATE) once the round trip has ended, or, when every statement
    succeeded, the error of the sync itself: the commit of statements sent without ``BEGIN``,
    refused (a deferred constraint, a ``NOTIFY`` queue full, a serialization failure:
    ``at_sync`` tells it); an ``OperationalError`` if the connection broke (it is then unusable,
    as after psycopg's own pipeline). A text marked ``at_once`` is prepared at its first
    execution on the connection (as psycopg's ``prepare=True``)."""
    transformer, converted = _adapted(conn, statements)
    with conn.lock:
        _check_open(conn)
        fresh = _deallocated(conn)
        sent = _sent(conn, converted, fresh, statements)
        try:
            results = conn.wait(_round_trip(conn.pgconn))
        finally:
            _leave_pipeline(conn.pgconn)
        found = Found()
        _, failed = _rows(conn, transformer, sent, results, found)
        if failed is None and conn._prepared._to_flush:  # else at psycopg's next statement
            conn.wait(conn._prepared.maintain_gen(conn))  # deallocations the results called for
    if failed is not None:
        forget_dropped(conn, failed)  # whoever catches it: see the module
        raise failed
    return found


_NOTHING_SENT = "stepline_nothing_sent"
# reads prepared at their first execution on a connection (``_statements.at_once``), where
# psycopg prepares a statement at its fifth: each of the first four was planned anew
AT_ONCE: set[str] = set()


class Found(list[list[Any] | None]):
    """What ``send_all`` returns: each statement's rows (None for one that returned none),
    and ``counts``: each one's row count (psycopg's ``rowcount``: -1 where the server said
    none)."""

    __slots__ = ("counts",)
    counts: list[int]


def _adapted(
    conn: psycopg.Connection[Any], statements: Sequence[tuple[str, Params]]
) -> tuple[abc.Transformer, list[Converted]]:
    """``_converted``, its error marked: nothing was sent (``nothing_sent``)."""
    try:
        return _converted(conn, statements)
    except psycopg.Error as exc:  # a value psycopg cannot send (a NUL in a text)
        setattr(exc, _NOTHING_SENT, True)
        raise


def nothing_sent(error: BaseException) -> bool:
    """Whether ``send_all`` (``send_all_async``) raised ``error`` before sending anything: a
    parameter psycopg could
    not adapt (a ``DataError`` without a SQLSTATE: a NUL in a text), none of the statements
    reached the server."""
    return getattr(error, _NOTHING_SENT, False) is True


async def send_all_async(
    conn: psycopg.Connection[Any],
    statements: Sequence[tuple[str, Params]],
    watch: Watch | None = None,
) -> list[list[Any] | None]:
    """``send_all`` on the running event loop, never blocking it: the same messages, written
    with libpq in non-blocking mode, every wait for the socket awaited through asyncio
    (``_drive``: the same generators ``Connection.wait`` drives; ``watch``: the socket's
    reader, registered with the loop for good, if it has one).
    Cancelled while the round trip is in flight, the connection is left busy mid-protocol:
    the caller must close it (its outcome is unknown when it carried a commit). A text
    marked ``at_once`` is prepared at its first execution on the connection, as there."""
    transformer, converted = _adapted(conn, statements)
    if not conn.lock.acquire(blocking=False):  # a connection of the caller's alone: never
        raise psycopg.InterfaceError("the connection is in use by another thread")
    conn.asked = converted  # type: ignore[attr-defined]  # this round trip's (_answers)
    try:
        _check_open(conn)
        socket = conn.pgconn.socket
        if _deallocation_due(conn):
            await _drive(conn._prepared.maintain_gen(conn), socket, watch)
        fresh = _deallocated(conn)  # no round trip left to make
        sent = _sent(conn, converted, fresh, statements)
        try:
            results = await _drive(_round_trip(conn.pgconn), socket, watch)
        finally:
            _leave_pipeline(conn.pgconn)
        rows, failed = _rows(conn, transformer, sent, results)
        if failed is None and conn._prepared._to_flush:
            await _drive(conn._prepared.maintain_gen(conn), socket, watch)
    except psycopg.OperationalError as exc:
        said = unanswered(conn, exc)  # the watchdog's cut, said as such
        if said is exc:
            raise
        raise said from exc
    finally:
        conn.asked = None  # type: ignore[attr-defined]
        conn.lock.release()
    if failed is not None:
        forget_dropped(conn, failed)  # whoever catches it: see the module
        raise failed
    return rows


def _converted(
    conn: psycopg.Connection[Any], statements: Sequence[tuple[str, Params]]
) -> tuple[abc.Transformer, list[Converted]]:
    """Every statement's parameters adapted (psycopg's query conversion), nothing sent. The
    connection's transformer is kept (as a cursor keeps its own): the dumper of each type is
    looked up once per connection, not once per statement's parameter (a new transformer for
    each round trip cost an ingest's ~40 parameters ~50 µs)."""
    transformer = _TRANSFORMERS.get(conn)
    if transformer is None:
        transformer = _TRANSFORMERS[conn] = Transformer.from_context(conn)
    return transformer, _converted_by(transformer, statements)


# a statement converted (what a ``PostgresQuery`` holds once converted): its text's bytes, its
# parameters dumped, their types and formats (a tuple: made in the conversion's loop without a
# call; a ``_Query`` of it for psycopg's prepared-statement cache, when it is asked)
Converted = tuple[bytes, Sequence[Any] | None, Sequence[int], Sequence[Any] | None]


class _Query:
    """A statement as psycopg's prepared-statement cache reads it (``Converted``'s)."""

    __slots__ = ("formats", "params", "query", "types")

    def __init__(
        self,
        query: bytes,
        params: Sequence[Any] | None,
        types: Sequence[int],
        formats: Sequence[Any] | None,
    ) -> None:
        self.query = query
        self.params = params
        self.types = types
        self.formats = formats


_Shape = tuple[bytes, list[Any]]  # a text's bytes for libpq, and each parameter's format
# a text's bytes, each parameter's format and their number (positional parameters)
_Positional = tuple[bytes, list[Any], int]
# a text's bytes, formats, names in order, and what takes their values from a dict, in order
_Named = tuple[bytes, list[Any], list[str], Callable[[Any], Sequence[Any]]]


class _Texts:
    """What ``PostgresQuery.convert`` makes of each text, by the kind of its parameters, for
    one encoding (None: psycopg's own conversion, which raises as it does)."""

    __slots__ = ("named", "plain", "positional")

    def __init__(self) -> None:
        self.positional: dict[str, _Positional | None] = {}
        self.plain: dict[str, bytes] = {}  # the texts sent without parameters, encoded
        self.named: dict[str, _Named | None] = {}


_TEXTS: dict[str, _Texts] = {}  # by encoding
_MOST_SHAPES = 1024  # texts come from the code: a bound, never reached in practice
_UNKNOWN: _Positional = (b"", [], -1)
_UNKNOWN_NAMED: _Named = (b"", [], [], tuple)


def _converted_by(
    transformer: abc.Transformer, statements: Sequence[tuple[str, Params]]
) -> list[Converted]:
    """``statements`` converted as ``PostgresQuery.convert`` converts them, its text's part of
    the work (encoding, placeholders, formats) done once per text: a statement with
    positional parameters in a list or tuple, or named ones in a dict (dumped in the order of
    their first placeholders: psycopg's conversion of a send's hand-off, ~550 bytecodes, was
    a 13th of the sender's before its write), has only its parameters adapted
    (``Transformer.dump_sequence``: ~180 bytecodes of psycopg's Python a statement, ~40
    here), one without parameters is its text encoded once. Any other (a long text or many
    parameters, a count that does not match, a name missing) is psycopg's own conversion,
    which raises as it does. The usual cases are made here, in the loop (a call less a
    statement: a send's six, ~250 bytecodes fewer)."""
    encoding = transformer.encoding  # (read from its connection once: a transformer's own)
    texts = _TEXTS.get(encoding)
    if texts is None:
        texts = _TEXTS.setdefault(encoding, _Texts())
    out: list[Converted] = []
    for query, params in statements:
        kind = type(params)
        if kind is tuple or kind is list:
            shape = texts.positional.get(query, _UNKNOWN)
            if shape is _UNKNOWN:
                shape = _learned(texts.positional, query, _positional(query, encoding, params))
            if shape is not None and shape[2] == len(params):  # type: ignore[arg-type]
                dumped = transformer.dump_sequence(params, shape[1])  # type: ignore[arg-type]
                out.append((shape[0], dumped, transformer.types or (), transformer.formats))
                continue
        elif params is None:  # the text as is, encoded once
            raw = texts.plain.get(query)
            if raw is None:
                raw = _learned(texts.plain, query, query.encode(encoding))
            out.append((raw, None, (), None))
            continue
        elif kind is dict:
            named = texts.named.get(query, _UNKNOWN_NAMED)
            if named is _UNKNOWN_NAMED:
                named = _learned(texts.named, query, _named_shape(query, encoding))
            if named is not None:
                try:
                    values = named[3](params)  # each name's value, in order (in C)
                except KeyError:  # a name missing: psycopg's error
                    pass
                else:
                    dumped = transformer.dump_sequence(values, named[1])
                    out.append((named[0], dumped, transformer.types or (), transformer.formats))
                    continue
        query_ = PostgresQuery(transformer)
        query_.convert(query, params)
        out.append((query_.query, query_.params, query_.types, query_.formats))
    return out


def _convert(transformer: abc.Transformer, query: str, params: Params) -> _Query:
    """``_converted_by`` of one statement."""
    return _Query(*_converted_by(transformer, ((query, params),))[0])


V = TypeVar("V")


def _learned(table: dict[str, V], query: str, value: V) -> V:
    """``value``, kept in ``table`` for ``query`` (the table emptied first when full)."""
    if len(table) >= _MOST_SHAPES:
        table.clear()
    table[query] = value
    return value


def _positional(query: str, encoding: str, params: Any) -> _Positional | None:
    shape = _shape(query, encoding, len(params))
    return None if shape is None else (*shape, len(shape[1]))


def _named_shape(query: str, encoding: str) -> _Named | None:
    """What ``PostgresQuery.convert`` makes of ``query``'s text given a ``dict`` of parameters
    (its names in the order of their first placeholders): None when psycopg would not cache
    it, or for a text without named placeholders (psycopg's own conversion, and errors)."""
    encoded = query.encode(encoding)
    if len(encoded) > MAX_CACHED_STATEMENT_LENGTH:
        return None
    try:
        text, formats, order, _ = _query2pg(encoded, encoding)
    except Exception:  # psycopg's own conversion raises it
        return None
    if not order or len(order) > MAX_CACHED_STATEMENT_PARAMS:
        return None
    if len(order) == 1:
        return text, formats, order, partial(_one_value, order[0])
    return text, formats, order, itemgetter(*order)


def _one_value(name: str, given: dict[str, Any]) -> tuple[Any]:
    return (given[name],)


def _shape(query: str, encoding: str, count: int) -> _Shape | None:
    """What ``PostgresQuery.convert`` makes of ``query``'s text, when it has positional
    placeholders only and psycopg would cache it (None otherwise)."""
    encoded = query.encode(encoding)
    if len(encoded) > MAX_CACHED_STATEMENT_LENGTH or count > MAX_CACHED_STATEMENT_PARAMS:
        return None
    try:
        text, formats, order, _ = _query2pg(encoded, encoding)
    except Exception:  # psycopg's own conversion raises it
        return None
    return None if order is not None else (text, formats)


def _check_open(conn: psycopg.Connection[Any]) -> None:
    if conn.pgconn.status != _CONNECTED:
        raise psycopg.OperationalError("the connection is closed")


def _sent(
    conn: psycopg.Connection[Any],
    converted: list[Converted],
    fresh: bool,
    statements: Sequence[tuple[str, Params]],
) -> list[_Sent]:
    """``converted`` (of ``statements``) buffered in libpq's pipeline mode, then the sync
    (nothing written yet); a text marked ``at_once`` prepared at once, the others as psycopg's
    cache decides."""
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    try:
        cache = conn._prepared
        # a statement prepared here before (the usual, a send's every one) is named at once
        # (``_PREPARED``), the rest as psycopg's cache decides (``_send``)
        names: OrderedDict[Any, bytes] = (
            cache._names if cache.prepare_threshold is not None else _NO_NAMES
        )
        sent: list[_Sent] = []
        for at, (text, params, types, formats) in enumerate(converted):
            key = (text, types)
            name = names.get(key)
            if name is None:
                at_once = statements[at][0] in AT_ONCE or None
                query = _Query(text, params, types, formats)
                sent.append(_send(pgconn, cache, query, fresh, at_once))
            else:
                pgconn.send_query_prepared(name, params, param_formats=formats)
                names.move_to_end(key)  # as psycopg's cache marks a use (its eviction order)
                sent.append(_PREPARED)
    except BaseException:  # libpq could not buffer one: never sync (commit) a part
        pgconn.finish()  # the server rolls back what it got; the connection is broken
        raise
    pgconn.pipeline_sync()
    return sent


_PREPARED: _Sent = (None, None)  # a statement prepared before: nothing to tell psycopg's cache
_NO_NAMES: OrderedDict[Any, bytes] = OrderedDict()  # prepared statements off: none named


def _leave_pipeline(pgconn: pq.abc.PGconn) -> None:
    """Out of pipeline mode once every result was read (a round trip cut off leaves it in)."""
    if pgconn.status == _CONNECTED and not pgconn.is_busy():
        pgconn.exit_pipeline_mode()


def at_sync(error: BaseException) -> bool:
    """Whether ``error``, raised by ``send_all``, is its sync's: every statement succeeded and
    the commit of statements sent without ``BEGIN`` was refused (nothing of them committed
    unless the error is one that may come after the commit's flush: ``_statements``)."""
    return getattr(error, _AT_SYNC, False) is True


def _deallocated(conn: psycopg.Connection[Any]) -> bool:
    """Run the ``DEALLOCATE ALL`` a failed round trip left waiting (psycopg's cache was cleared
    by a result of it: a ``ROLLBACK``, ``DROP``, ``DISCARD ALL`` …), before this round trip
    prepares anything it would then drop; whether it must still wait (the transaction is in
    its failed state, where it cannot run): nothing is prepared in this round trip then."""
    if _deallocation_due(conn):
        conn.wait(conn._prepared.maintain_gen(conn))
        return False
    return None in conn._prepared._to_flush


def _deallocation_due(conn: psycopg.Connection[Any]) -> bool:
    """Whether a ``DEALLOCATE ALL`` waits (``_deallocated``) and can run now (an evicted
    statement's own ``DEALLOCATE`` drops only it: it waits for psycopg's next statement)."""
    return (
        None in conn._prepared._to_flush
        and conn.pgconn.transaction_status != pq.TransactionStatus.INERROR
    )


def _send(
    pgconn: pq.abc.PGconn,
    cache: Any,
    query: _Query,
    unprepared: bool,
    prepare: bool | None = None,
) -> _Sent:
    """Buffer ``query``, prepared first if psycopg's cache says so (as a cursor would, given
    ``prepare``), never prepared anew when ``unprepared``."""
    prep, name = cache.get(query, prepare)
    if unprepared and prep is Prepare.SHOULD:
        prep, name = Prepare.NO, b""
    parse: _Cached = None
    if prep is Prepare.NO:
        pgconn.send_query_params(
            query.query, query.params, param_formats=query.formats, param_types=query.types
        )
    else:
        if prep is Prepare.SHOULD:
            pgconn.send_prepare(name, query.query, param_types=query.types)
            parse = (cache.key(query), prep, name)
        pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
    key = cache.maybe_add_to_cache(query, prep, name)
    return parse, None if key is None else (key, prep, name)


def _rows(
    conn: psycopg.Connection[Any],
    transformer: abc.Transformer,
    sent: list[_Sent],
    results: list[list[pq.abc.PGresult]],
    found: list[list[Any] | None] | None = None,
) -> tuple[list[list[Any] | None], psycopg.Error | None]:
    """Each statement's rows (appended to ``found``, which gets the row counts too when it is a
    ``Found``), psycopg's cache told what each returned, and the first error: a
    statement's, or else the sync's. Without ``BEGIN`` the statements are one transaction that
    the sync commits, and an error of that commit comes as one more command's results after the
    last statement's (none come otherwise: notices, ``NOTIFY`` messages and parameter changes
    are not results)."""
    counts: list[int] | None = None
    if found is None:
        found = []
    elif isinstance(found, Found):
        found.counts = counts = []
    failed: psycopg.Error | None = None
    at = 0
    for parse, cached in sent:
        if parse is not None:  # the Parse's own result
            parsed = results[at]
            at += 1
            if parsed[-1].status not in _OK:  # not prepared (psycopg's own pipeline keeps it)
                conn._prepared.validate(*parse, parsed)
                if failed is None:
                    failed = _error(conn, parsed[-1])
        outcome = results[at]
        at += 1
        if cached is not None:
            conn._prepared.validate(*cached, outcome)
        result = outcome[-1]
        if counts is not None:
            tuples = result.command_tuples
            counts.append(-1 if tuples is None else tuples)
        if result.status == _TUPLES:
            transformer.set_pgresult(result)
            found.append(transformer.load_rows(0, result.ntuples, tuple))
        else:
            found.append(None)
            if result.status not in _OK and failed is None:
                failed = _error(conn, result)
    if failed is None and at < len(results):  # the sync's: an implicit transaction's commit
        failed = next(
            (_error(conn, r) for r in results[at] if r.status not in _OK),
            psycopg.InterfaceError(f"unexpected results after the last statement: {results[at]}"),
        )
        setattr(failed, _AT_SYNC, True)
    return found, failed


def _error(conn: psycopg.Connection[Any], result: pq.abc.PGresult) -> psycopg.Error:
    if result.status == pq.ExecStatus.PIPELINE_ABORTED:  # an earlier one failed: said first
        return errors.PipelineAborted("pipeline aborted")
    return errors.error_from_result(result, encoding=conn.info.encoding)


def _round_trip(pgconn: pq.abc.PGconn) -> Any:
    """The generator (driven by ``Connection.wait``) writing what is buffered and reading
    every result up to the pipeline's sync: one list per command (a Parse, a statement)."""
    while pgconn.flush():  # the server may answer before it has read everything: read too
        ready = yield Wait.RW
        if ready & Ready.R:
            pgconn.consume_input()
    results: list[list[pq.abc.PGresult]] = []
    current: list[pq.abc.PGresult] = []
    while True:
        while pgconn.is_busy():
            if (yield Wait.R):
                pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one command's results
            if current:
                results.append(current)
                current = []
            continue
        if result.status == _SYNC:
            return results
        current.append(result)


async def _drive(gen: Generator[Wait, Ready, T], fileno: int, watch: Watch | None = None) -> T:
    """``Connection.wait`` on the running event loop: ``gen`` resumed each time the socket is
    ready as it asks (a reader or writer callback of the loop's, removed after each wait, or
    ``watch`` armed: a reader registered for good; no timer, as psycopg's ``wait_async`` sets
    one per wait). In a ``Driven`` coroutine (the writer's loop commit) that callback resumes
    it itself (``SocketWait``), with no future set and no task woken a loop turn later. A
    socket closed under it raises ``OperationalError``, as psycopg's waits do."""
    try:
        wait = next(gen)
        if driving():
            while True:
                wait = gen.send(cast(Ready, await SocketWait(fileno, wait, watch)))
        loop = asyncio.get_running_loop()
        while True:
            if watch is not None and wait == Wait.R:
                # the reader steps ``gen`` itself while it reads (its input consumed in that
                # callback: the socket does not stay readable for the loop's next turn)
                stepped: asyncio.Future[tuple[bool, Any]] = loop.create_future()
                watch.arm(partial(_advance, gen, stepped, watch))
                try:
                    ended, value = await stepped
                finally:
                    watch.disarm()
                if ended:
                    return cast(T, value)
                wait = value
                continue
            woken: asyncio.Future[Ready] = loop.create_future()
            if wait & Wait.R:
                if watch is not None:
                    watch.arm(partial(_woken, woken))
                else:
                    loop.add_reader(fileno, _woken, woken, Ready.R)
            if wait & Wait.W:
                loop.add_writer(fileno, _woken, woken, Ready.W)
            try:
                ready = await woken
            finally:
                if wait & Wait.R:
                    if watch is not None:
                        watch.disarm()
                    else:
                        loop.remove_reader(fileno)
                if wait & Wait.W:
                    loop.remove_writer(fileno)
            wait = gen.send(ready)
    except StopIteration as done:
        result: T = done.value
        return result
    except OSError as exc:
        raise psycopg.OperationalError(f"connection socket closed: {exc}") from exc


def _advance(
    gen: Generator[Wait, Ready, Any],
    future: asyncio.Future[tuple[bool, Any]],
    watch: Watch,
    ready: int,
) -> None:
    """``watch``'s reader callback: ``gen`` resumed here while it waits to read (armed again);
    ``future`` told once it returned (True, its value), raised, or waits otherwise (False, the
    wait)."""
    if future.done():  # its task was cancelled
        return
    try:
        wait = gen.send(Ready(ready))
    except StopIteration as done:
        future.set_result((True, done.value))
        return
    except BaseException as exc:  # OSError: told where it waits (``_drive``)
        future.set_exception(exc)
        return
    if wait == Wait.R:
        watch.arm(partial(_advance, gen, future, watch))
    else:
        future.set_result((False, wait))


def _woken(future: asyncio.Future[Ready], ready: Ready | int) -> None:
    if not future.done():
        future.set_result(Ready(ready))


# each connection's transformer (_converted); used by one thread at a time, as the connection
_TRANSFORMERS: weakref.WeakKeyDictionary[psycopg.Connection[Any], abc.Transformer] = (
    weakref.WeakKeyDictionary()
)
_WAITS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, bool] = weakref.WeakKeyDictionary()


_waited: weakref.ref[asyncio.AbstractEventLoop] | None = None  # the last loop found to wait


def loop_waits(loop: asyncio.AbstractEventLoop, conn: psycopg.Connection[Any]) -> bool:
    """Whether ``loop`` can wait on a socket (``add_reader``/``add_writer``, which ``_drive``
    needs: asyncio's ``ProactorEventLoop`` has neither). Probed once per loop on ``conn``'s
    socket (nothing sent), before a commit is written: never found out after. The last loop
    found to wait is told at once (a step's commit after another, on one loop)."""
    global _waited
    if _waited is not None and _waited() is loop:
        return True
    waits = _WAITS.get(loop)
    if waits is None:
        fileno = conn.fileno()
        try:
            loop.add_reader(fileno, _no_op)
            loop.remove_reader(fileno)
            loop.add_writer(fileno, _no_op)
            loop.remove_writer(fileno)
        except NotImplementedError:
            waits = False
        else:
            waits = True
        _WAITS[loop] = waits
    if waits:
        _waited = weakref.ref(loop)
    return waits


def _no_op() -> None:
    pass
