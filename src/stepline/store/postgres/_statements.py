"""The statements of one write transaction, sent in as few round trips as their results allow.

A statement whose result nobody reads (an ``INSERT`` without ``RETURNING``, an ``UPDATE`` whose
row count decides nothing, ``SAVEPOINT``, an advisory lock) is queued (``write``); a statement
whose result is read (``run``) is sent together with everything queued before it, in psycopg's
pipeline mode: one round trip, the server executing them in order, and the result read after the
pipeline's sync (so ``rowcount`` and every row are there). Queued statements are also sent at
the end of each outermost savepoint (a store verb, or an engine job wrapping verbs), so a
statement that fails raises inside the job that queued it, never in a later one: that savepoint
is then rolled back alone, as before, and the rest of the group-commit transaction goes on.

Inside a job, a verb's queued write may be sent by a later verb's read, and fail there. Its error
belongs to the innermost savepoint still open that began before the round trip's first statement
(that savepoint holds every statement the round trip sent): the savepoints opened since pass it
on untouched, as ``_Elsewhere`` (a ``BaseException``, so a job's ``except Exception`` around a
later verb cannot take it for that verb's error and go on in a failed transaction), and that
savepoint rolls back and raises the error itself. The rule goes by the round trip's first
statement that may fail, not by the one that failed: when the later verb's own statement fails
in a round trip that also carried an earlier verb's queued writes, its error too is the
enclosing savepoint's (the whole job's), so a job cannot catch it around that verb and go on.
No job does so today (the ingest, lease and announcement jobs let such errors end the job);
a verb whose caller must be able to catch its error would send what was queued first (``flush``).

Savepoints are this module's own (``savepoint``), not psycopg's nested ``transaction()``: their
``SAVEPOINT`` and ``RELEASE`` are queued like any write. A savepoint that ends in an exception
before its ``SAVEPOINT`` was sent drops what it queued (nothing reached the server); after, it
sends ``ROLLBACK TO`` it (the transaction may be in its failed state: a pipeline's sync ended
the failed statement's pipeline, so the rollback is executed, not skipped).

Outside any savepoint a write is sent at once (nothing may fail later than its statement).
``BEGIN`` is sent with the transaction's first statement and ``COMMIT`` with its last writes.

An optimistic transaction (``optimistic=True``) has no savepoints: every write is queued, the
end of a savepoint sends nothing, and whatever fails — a statement, or an exception raised
through a savepoint, even one a job then catches — spoils the whole transaction, which then
ends in ``Spoiled`` (rolled back, never committed) for its jobs to be made again carefully.
The jobs of a group commit are then sent in one round trip with the ``COMMIT`` (plus one for
each statement whose result is read).
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg

from stepline._driven import Watch
from stepline.store.interface import WouldBlock
from stepline.store.postgres import _pipeline
from stepline.store.postgres import queries as q
from stepline.store.postgres._database import forget_dropped
from stepline.store.postgres._lease_queries import DEFAULT_PLANS, GENERIC_PLANS, LEASE_ALONE
from stepline.store.postgres._merging import _HOLD, Later, _planned
from stepline.store.postgres._outcomes import _maybe_committed as _maybe_committed
from stepline.store.postgres._outcomes import (
    _maybe_committed_when_interrupted as _maybe_committed_when_interrupted,
)
from stepline.store.postgres._outcomes import _quiet as _quiet
from stepline.store.postgres._statement_parts import Marked, Result, Rows, _Elsewhere
from stepline.store.postgres._statement_parts import Spoiled as Spoiled

Params = Sequence[Any] | dict[str, Any] | None
_OUTERMOST = 2  # the depth of an outermost savepoint (the transaction is depth 1)
_TEXT = operator.itemgetter(0)  # a queued statement's text
_A_SET = operator.methodcaller("startswith", "SET ")  # whether a text is a SET
T = TypeVar("T")
AT_ONCE = _pipeline.AT_ONCE  # the reads marked ``at_once``


def _keep(laters: list[Later | None] | None, rows: list[list[Any] | None]) -> None:
    """Each ``Later``'s rows (``read_later``), from its statement's (those sent first, in
    order: a round trip's reads come after)."""
    if laters is not None:
        for later, found in zip(laters, rows, strict=False):
            if later is not None:
                later.rows = found


def at_once(query: str) -> str:
    """``query``, marked to be prepared at its first execution on a connection (``AT_ONCE``:
    ``run_all``, and the reads' ``PostgresReads._read``). Sent where ``plan_cache_mode`` is
    ``force_generic_plan`` (``_lease_queries.GENERIC_PLANS`` in a transaction, or
    ``_handoffs.GENERIC`` before it in a pipeline's implicit one), its generic plan is made
    once per connection and kept, where each of its first executions planned it for its
    parameters (a lease's candidates and the next due time: 1.6-3.8 ms of the server's CPU
    each, at each of a connection's first ten or so, and at every one of a statement whose
    generic plan PostgreSQL judges dearer than its custom ones)."""
    AT_ONCE.add(query)
    return query


# a transaction of its own whose commit waits for the WAL's flush up to its commit record: it
# writes a row (a commit that wrote no WAL, as one that only took a transaction id, waits for
# nothing), its server process's own (migration 15), so concurrent ones never wait for each other;
# prepared at its first execution on a connection (each send that waits for its flush runs it)
FLUSHED = at_once("""
INSERT INTO wal_flushes (backend, flushes) VALUES (pg_backend_pid() % 1024, 1)
ON CONFLICT (backend) DO UPDATE SET flushes = wal_flushes.flushes + 1""")


class Statements:
    """Queued writes and savepoints on one connection inside a transaction."""

    # what a transaction starts with (class attributes: set on the instance when they change;
    # a transaction is made per commit, and these never change for most)
    spoiled = False  # an optimistic transaction that must not commit
    maybe_committed = False  # the COMMIT's round trip failed: see transaction()
    # committed without waiting for its WAL's flush, which it then waits for (_wait_flush): so
    # its notification goes out at its commit (the store sets it: _commit_end.last_statements)
    flush_after = False
    # the last round trip's pipeline failed at one of its statements, not at its sync, the
    # connection fine: a transaction without BEGIN in it was rolled back by the sync
    statement_failed = False
    _sent = 0  # statements sent so far (a queued one's number is _sent + its index)
    _depth = 0
    round_trips = 0
    # a connection not checked before use (``unchecked``): its first round trip is the
    # check. When that round trip fails, the connection may have ended before the
    # transaction began (``stale``): nothing of it committed, since a COMMIT never goes in
    # it unless the connection's socket had nothing to read (``_quiet``: a connection the
    # server ended has that end waiting); otherwise an empty statement checks it first
    unchecked = False
    stale = False
    # a transaction driven from an event loop (``commit_on_loop``): any round trip but its
    # commit's refuses to be made (``WouldBlock``, nothing sent: the jobs go to a thread)
    on_loop = False
    watch: Watch | None = None  # its socket's reader, registered for good (_kept)
    blocked = False
    job = 0  # the index of the job running (set by the caller: commit_on_loop)
    read_by: int | None = None  # the job refused a read, if that was the refusal

    def __init__(self, conn: psycopg.Connection[Any], optimistic: bool = False) -> None:
        self.conn = conn
        self.optimistic = optimistic
        self._queued: list[tuple[str, Params]] = []
        self._tables: list[str | Later | None] = []  # of each queued statement: see write()
        self._open: list[tuple[str, int]] = []  # open savepoints: (name, its statement number)

    def would_block(self, why: str, read: bool = False) -> None:
        """On an event loop: refuse a round trip that would block it (the transaction is
        spoiled, should a job catch the error and go on). ``read``: a job's statement whose
        result is read before the commit (the job, ``WouldBlock.job``, needs one each time)."""
        if self.on_loop:
            if not self.blocked and read:
                self.read_by = self.job
            self.spoiled = self.blocked = True
            raise WouldBlock(why, self.read_by)

    def _owned(self, error: psycopg.Error, first: int) -> BaseException:
        """What to raise for ``error`` of a round trip whose first statement that may fail has
        the number ``first``: ``error`` itself when it is the innermost savepoint's (or no
        savepoint is open), else an ``_Elsewhere`` for the savepoint that holds the round trip.
        In an optimistic transaction, ``error`` itself: the transaction is spoiled."""
        if self.optimistic:
            self.spoiled = True
            return error
        open_ = self._open
        owner = len(open_) - 1
        while owner >= 0 and open_[owner][1] > first:
            owner -= 1
        if owner < 0 or owner == len(open_) - 1:
            return error
        return _Elsewhere(error, owner)

    # -- statements -------------------------------------------------------------------------------
    def write(self, query: str, params: Params = None, table: str | None = None) -> None:
        """Execute ``query`` before the next statement whose result is read; its own result is
        never read (an error in it raises at that statement, or at the end of the savepoint).
        ``table``: the query writes that table only and reads nothing but the rows it writes
        (positional parameters, no ``WITH``): adjacent such writes to different tables are sent
        as one statement (``_merged``)."""
        if not self.optimistic and self._depth < _OUTERMOST:
            self.run(query, params)
        elif query == GENERIC_PLANS:
            self._queue(query, params, table)
        else:  # (as _queue: a pass commit's writes, several a run, at a call less each)
            self._queued.append((query, params))
            self._tables.append(table)

    def _queue(self, query: str, params: Params = None, table: str | None = None) -> None:
        queued = self._queued
        if query == GENERIC_PLANS and self.optimistic and queued and queued[-1][0] == DEFAULT_PLANS:
            # generic plans asked for again right after they were put back (an ingest's,
            # then a lease's by name): they go on, neither statement is sent (the settings
            # saved by the first are those the last one puts back)
            del queued[-1], self._tables[-1]
            return
        queued.append((query, params))
        self._tables.append(table)

    def hold(self, run_id: str, token: str) -> None:
        """Queue ``HOLD_LEASE`` of ``run_id``: its queue row locked, or a failure when its
        lease token is not ``token``. The holds sent in one round trip are one statement
        (``HOLD_LEASES``), where the first of them stood: each lock is still taken before any
        statement queued after its own, and held until the transaction ends."""
        self._queued.append((q.HOLD_LEASE, (run_id, token)))
        self._tables.append(_HOLD)

    def write_many(self, query: str, rows: Sequence[Params], table: str | None = None) -> None:
        """``write`` for each of ``rows`` (queued at once where each would be: a pass
        commit's steps and history, a call each instead of two per row)."""
        if (self._depth < _OUTERMOST and not self.optimistic) or query == GENERIC_PLANS:
            for params in rows:
                self.write(query, params, table)
            return
        queued, tables = self._queued, self._tables
        for params in rows:
            queued.append((query, params))
            tables.append(table)

    def read_later(self, query: str, params: Params = None) -> Later:
        """Queue ``query`` like a write, keeping its result: the ``Later``'s rows are there
        once the statement was sent (by the next ``run`` or ``flush``)."""
        later = Later()
        if self._depth < _OUTERMOST and not self.optimistic:
            later.rows = self.run(query, params).fetchall()
            return later
        self._queued.append((query, params))
        self._tables.append(later)
        return later

    def run(self, query: str, params: Params = None) -> Result:
        """Execute what is queued, then ``query``, in one round trip; its cursor, with every
        row and ``rowcount`` there. An error of a queued statement raises here."""
        self.would_block("a statement whose result is read before the commit", read=True)
        if not self._queued:
            self.round_trips += 1
            self._sent += 1
            try:
                return self.conn.execute(query, params)  # the innermost savepoint's, if it fails
            except psycopg.Error as exc:
                self.spoiled = self.optimistic
                self._failed_trip(exc)
                raise
        return self.run_all([(query, params)])[0]

    def run_all(self, statements: Sequence[tuple[str, Params]]) -> list[Result]:
        """``run`` for several statements whose results are read: sent (after what is
        queued) in one round trip (``_pipeline.send_all``: psycopg's pipeline wrote each
        statement as it was executed and cost this process about five times the CPU); the
        result of each, in order."""
        if not statements:
            return []
        self.would_block("statements whose results are read before the commit", read=True)
        self.round_trips += 1
        before = self._queued, self._tables, self._sent
        first, queued, laters = self._take()
        conn = self.conn
        trip = queued + list(statements)
        try:
            rows = _pipeline.send_all(conn, trip)
        except psycopg.Error as exc:
            if _pipeline.nothing_sent(exc):  # as flush: what was queued stays queued, unsent
                self._queued, self._tables, self._sent = before
                self.round_trips -= 1
            else:
                self._sent += len(statements)
                self._failed_trip(exc)
            raise self._owned(exc, first) from None
        self._sent += len(statements)
        _keep(laters, rows)
        counts = rows.counts
        return [Rows(rows[i], counts[i]) for i in range(len(queued), len(trip))]

    def flush(self) -> None:
        """Execute every queued statement now (one round trip)."""
        if not self._queued:
            return
        self.would_block("a round trip before the commit", read=True)
        self.round_trips += 1
        before = self._queued, self._tables, self._sent
        first, queued, laters = self._take()
        conn = self.conn
        try:  # one pipeline, even for one statement: its error is told from its sync's
            rows = _pipeline.send_all(conn, queued)
        except psycopg.Error as exc:
            if _pipeline.nothing_sent(exc):
                # a value psycopg cannot send (a NUL in a text): what was queued stays queued
                # and unsent. Counted as sent, a savepoint begun in it was rolled back to as
                # if its SAVEPOINT had been sent: to the one of the same name whose RELEASE
                # was queued before it, undoing an earlier job's writes, which that job was
                # told were committed (review, seventeenth stop)
                self._queued, self._tables, self._sent = before
                self.round_trips -= 1
                raise self._owned(exc, first) from None
            self.statement_failed = not (conn.broken or _pipeline.at_sync(exc))
            self._failed_trip(exc)
            raise self._owned(exc, first) from None
        _keep(laters, rows)

    def _failed_trip(self, error: psycopg.Error) -> None:
        """A round trip failed: on an unchecked connection, the first one says the connection
        may have been stale (see ``unchecked``) when the error is the connection's (broken, no
        SQLSTATE, class 08 or 57: a server that ended it), not the server refusing a statement
        (a lock or a constraint: the connection is fine, the pool need not be checked). A
        statement gone from the server (26000) makes psycopg forget every name it prepared on
        the connection here (``forget_dropped``), whoever then catches the error: a job that
        catches it and goes on spoils the transaction, and the others, dropped too, would each
        fail once more at their next use on the connection."""
        forget_dropped(self.conn, error)
        if self.unchecked and self.round_trips == 1:
            code = error.sqlstate
            self.stale = self.conn.broken or code is None or code[:2] in ("08", "57")

    def _take(self) -> tuple[int, list[tuple[str, Params]], list[Later | None] | None]:
        """The number of the first queued statement that may fail (a ``RELEASE`` of a
        savepoint that exists or a ``BEGIN`` cannot), the queued statements, merged, and the
        ``Later`` of each (None: none has one)."""
        queued, tables = self._queued, self._tables
        self._queued, self._tables = [], []
        first = self._sent
        for query, _ in queued:
            if not (query.startswith("RELEASE ") or query == "BEGIN"):
                break
            first += 1
        self._sent += len(queued)
        return first, *_planned(queued, tables)

    # -- the transaction --------------------------------------------------------------------------
    @contextmanager
    def transaction(
        self, last: Callable[[], Sequence[tuple[str, Params, str | None]]]
    ) -> Iterator[None]:
        """``BEGIN`` … ``COMMIT`` around the block (the connection is in autocommit mode): the
        ``BEGIN`` goes with the first statement, the ``COMMIT`` with what is still queued and
        the statements ``last()`` gives (query, parameters, ``write`` table: a ``NOTIFY``, a
        ``SET LOCAL``), in one round trip. An
        exception rolls it all back; when the ``COMMIT``'s round trip failed and the
        transaction may have committed all the same, ``maybe_committed`` is set
        (``_maybe_committed``)."""
        self._queue("BEGIN")
        self._depth += 1
        try:
            yield
            implicit = self._ending(last)
            try:
                self.flush()
            except psycopg.Error as exc:
                self._commit_failed(exc, implicit)
                raise
            except BaseException:  # interrupted (Ctrl-C) during the round trip: raised as is
                self.maybe_committed = _maybe_committed_when_interrupted(self.conn)
                raise
            if self.flush_after:
                self._wait_flush()
        except _Elsewhere as exc:  # cannot happen (a savepoint that was open took it)
            self._rollback()
            raise exc.error from None
        except BaseException:
            self._rollback()
            raise

    async def commit_on_loop(
        self, body: Callable[[], T], last: Callable[[], Sequence[tuple[str, Params, str | None]]]
    ) -> T:
        """``transaction()`` around ``body()`` (an optimistic transaction's jobs), in the running
        event loop and never blocking it: every round trip but the commit's raises
        ``WouldBlock`` with nothing sent (``on_loop``), as does a commit that would need one
        more (a ``BEGIN`` … ``COMMIT`` transaction, a connection to check first); the commit's
        is awaited (``_pipeline.send_all_async``). Never a ``ROLLBACK`` round trip: nothing was
        sent, or the pipeline's sync ended the transaction; a connection left in any other
        state (a cancelled round trip: busy mid-protocol) is closed. ``body``'s result."""
        self.on_loop = True
        self._queue("BEGIN")
        self._depth += 1
        try:
            result = body()
            implicit = self._ending(last)
            if not implicit:  # its failure would leave a transaction open, to roll back
                self.would_block("a transaction that needs BEGIN")
            await self._committed_async(implicit, self._flush_async())
            if self.flush_after:
                await self._wait_flush_async()
            return result
        except BaseException:
            self._ended_on_loop()
            raise

    async def commit_statement_on_loop(self, query: str, params: Params) -> None:
        """``commit_on_loop`` of one statement given whole, that reads nothing before its
        commit and makes no notification (a lone step's commit: ``_alone``): sent without
        ``BEGIN``, committed by its pipeline's sync (as ``_implicit`` sends a transaction),
        the connection checked first as there (``WouldBlock``), the same outcome rules."""
        self.on_loop = True
        try:
            self._check_connection()
            await self._committed_async(True, self._sent_async([(query, params)], 0))
        except BaseException:
            self._ended_on_loop()
            raise

    async def _committed_async(self, implicit: bool, round_trip: Awaitable[object]) -> None:
        """``round_trip`` (the commit's) awaited: when it failed, whether the transaction may
        have committed all the same (``maybe_committed``)."""
        try:
            await round_trip
        except psycopg.Error as exc:
            self._commit_failed(exc, implicit)
            raise
        except BaseException:  # cancelled during the round trip: the reply is lost
            self.maybe_committed = _maybe_committed_when_interrupted(self.conn)
            raise

    def _ended_on_loop(self) -> None:
        """A transaction on the loop failed: nothing left queued, the connection closed unless
        idle (never waited for on the loop: the pool replaces it)."""
        self._depth = 0
        self._open = []
        self._queued, self._tables = [], []
        if self.conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.close()

    def _ending(self, last: Callable[[], Sequence[tuple[str, Params, str | None]]]) -> bool:
        """Ready the commit: what ``last()`` gives queued, then ``COMMIT`` unless the
        transaction is sent without ``BEGIN`` (``_implicit``: whether it is). Raises
        ``Spoiled`` (``WouldBlock`` on a loop that refused a round trip) when it must not
        commit."""
        if self.blocked:
            raise WouldBlock("a job needed a round trip before the commit", self.read_by)
        if self.spoiled:
            raise Spoiled("a job or a statement of this optimistic transaction failed")
        if self.conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            # a statement sent outside every savepoint failed and a job went on (it caught
            # the error): the server would take the COMMIT for a ROLLBACK without a word,
            # and the jobs would be told their writes committed
            raise Spoiled("a statement outside every savepoint failed: nothing can commit")
        self._depth -= 1
        queued = self._queued
        generic = False  # the generic plans are on up to the commit
        if self.optimistic and queued and queued[-1][0] == DEFAULT_PLANS:
            # the transaction's own settings end with it: none of the last statements
            # (a NOTIFY, the commit's settings, a hand-off with generic plans) needs them back
            del queued[-1], self._tables[-1]
            generic = True
        for statement, params, table in last():
            if statement == LEASE_ALONE and generic and self._generic_ends_it():
                continue
            self._queue(statement, params, table)
        self._check_connection()
        implicit = self._implicit()
        if implicit:
            del self._queued[0], self._tables[0]
            self._sent += 1
        else:
            self._queue("COMMIT")
        return implicit

    def _generic_ends_it(self) -> bool:
        """(An optimistic transaction whose generic plans are on up to its commit, its last
        ``DEFAULT_PLANS`` dropped) Whether its last queued ``GENERIC_PLANS``, with no
        ``DEFAULT_PLANS`` after it, was made ``LEASE_ALONE``: those settings, the commit's
        ``synchronous_commit`` off too (read at the commit only), without saving the plan mode
        before (nothing puts it back). A hand-off's ``HANDING`` (``LEASE_ALONE``: the same
        settings) is then a statement fewer for the server: its commit's round trip has six
        where it had seven (an event sent from another process)."""
        queued = self._queued
        texts = list(map(_TEXT, queued))  # the last of each looked for in C, from the end
        texts.reverse()
        try:
            back = texts.index(GENERIC_PLANS)
        except ValueError:
            return False
        if DEFAULT_PLANS in texts[:back]:  # put back after it
            return False
        queued[len(queued) - 1 - back] = (LEASE_ALONE, None)
        return True

    def _check_connection(self) -> None:
        """Before the commit: an unchecked connection with something to read is checked by a
        round trip first (``WouldBlock`` on a loop, after closing it)."""
        if self.unchecked and not self.round_trips and not _quiet(self.conn):
            # never a COMMIT on an unchecked connection with something to read (see _quiet)
            if self.on_loop:
                self.conn.close()  # most likely ended by the server: the pool replaces it
            self.would_block("a connection to check")
            self.round_trips += 1
            try:
                self.conn.execute("")
            except psycopg.Error:
                self.stale = True
                raise

    def _wait_flush(self) -> None:
        """(A transaction committed without waiting for its WAL's flush: ``flush_after``) Wait
        for that flush: ``FLUSHED``, a transaction of its own committed after it with
        ``synchronous_commit`` on, so the server flushes the WAL up to that one's commit record,
        past this one's. Failed or interrupted, the transaction's outcome is unknown
        (committed, perhaps not on disk)."""
        self.flush_after = False
        self.round_trips += 1
        try:
            _pipeline.send_all(self.conn, [(FLUSHED, None)])
        except BaseException:
            self.maybe_committed = True
            raise

    async def _wait_flush_async(self) -> None:
        """``_wait_flush`` awaited on the running loop."""
        self.flush_after = False
        self.round_trips += 1
        try:
            await _pipeline.send_all_async(self.conn, [(FLUSHED, None)], self.watch)
        except BaseException:
            self.maybe_committed = True
            raise

    def _commit_failed(self, error: psycopg.Error, implicit: bool) -> None:
        """The commit's round trip failed with ``error``: whether it may have committed all
        the same (``maybe_committed``). Without ``BEGIN``, a statement's error (not the
        sync's: the commit's) means the sync rolled the transaction back; else as a
        ``COMMIT``'s error."""
        if _pipeline.nothing_sent(error):  # a value psycopg refused: the COMMIT was not sent
            self.maybe_committed = False
            return
        rolled_back = implicit and self.statement_failed
        self.maybe_committed = not rolled_back and _maybe_committed(self.conn, error)

    async def _flush_async(self) -> None:
        """``flush`` awaited on the running loop (always one pipeline: a lone statement's
        error is told from its sync's, the commit's, as for several)."""
        if not self._queued:
            return
        first, queued, laters = self._take()
        _keep(laters, await self._sent_async(queued, first))

    async def _sent_async(
        self, statements: list[tuple[str, Params]], first: int
    ) -> list[list[Any] | None]:
        """``statements`` sent in one round trip awaited on the loop (the number of the first
        that may fail: ``first``); each one's rows."""
        self.round_trips += 1
        conn = self.conn
        try:
            return await _pipeline.send_all_async(conn, statements, self.watch)
        except psycopg.Error as exc:
            self.statement_failed = not (conn.broken or _pipeline.at_sync(exc))
            self._failed_trip(exc)
            raise self._owned(exc, first) from None

    def _implicit(self) -> bool:
        """Whether the transaction, about to commit, is better sent without ``BEGIN`` and
        ``COMMIT`` (two statements fewer for the server): an optimistic one (no savepoints) whose
        statements all go in this one round trip, where a pipeline's statements are one
        transaction, committed by its sync (``_pipeline``), or a single statement, committed
        alone. Not with a ``SET LOCAL``, which warns outside ``BEGIN`` (``set_config(…, true)``
        does not)."""
        queued = self._queued
        return (
            self.optimistic
            and not self.round_trips
            and bool(queued)
            and queued[0][0] == "BEGIN"
            and not any(map(_A_SET, map(_TEXT, queued)))
        )

    def _rollback(self) -> None:
        """The transaction's end after an exception: ``ROLLBACK`` unless none is open."""
        self._depth = 0
        self._open = []
        self._queued, self._tables = [], []
        if self.conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error:  # the connection is gone: the caller's error says why
                pass

    # -- savepoints -------------------------------------------------------------------------------
    def savepoint(self, on_undo: Callable[[], None] | None = None) -> AbstractContextManager[Any]:
        """A savepoint around the block: an exception rolls back what the block did (and calls
        ``on_undo``), the rest of the transaction stays. The outermost one sends what it queued
        before it ends, so its statements' errors raise inside it. A savepoint opened right
        after its enclosing one (nothing between them: an engine job's savepoint and the verb's
        inside it) is that one: rolling back to it undoes the same, and it stays open. In an
        optimistic transaction, it only marks an exception raised through it (``spoiled``):
        ``Marked``, a plain object (a job's verbs open several: a generator's cost shows)."""
        if self.optimistic:
            return Marked(self)
        return self._savepoint(on_undo)

    @contextmanager
    def _savepoint(self, on_undo: Callable[[], None] | None) -> Iterator[None]:
        self._depth += 1
        here = self._sent + len(self._queued)  # the number its SAVEPOINT statement would have
        enclosing = self._open[-1] if self._open else None
        alias = enclosing is not None and enclosing[1] == here - 1
        if alias:
            assert enclosing is not None
            name, start = enclosing
        else:
            name, start = f"s{len(self._open)}", here
            self._queue(f"SAVEPOINT {name}")
        self._open.append((name, start))
        try:
            yield
            if self._depth == _OUTERMOST:
                self.flush()
        except _Elsewhere as exc:  # a failed statement sent before this savepoint began
            self._depth -= 1
            self._open.pop()
            if on_undo is not None:
                on_undo()
            if exc.owner != len(self._open):
                raise  # the enclosing savepoint that holds it handles it
            self._undo(start, name, keep=alias)
            raise exc.error from None
        except BaseException:
            self._depth -= 1
            self._open.pop()
            self._undo(start, name, keep=alias)
            if on_undo is not None:
                on_undo()
            raise
        self._depth -= 1
        self._open.pop()
        if not alias:
            self._queue(f"RELEASE {name}")  # sent with the next statements

    def _undo(self, start: int, name: str, *, keep: bool) -> None:
        """Undo everything since the savepoint ``name`` began (statement number ``start``);
        ``keep``: it stays open (its enclosing block goes on), else it is released."""
        if start >= self._sent:  # its SAVEPOINT was never sent: neither was anything after it
            del self._queued[start - self._sent + (1 if keep else 0) :]
            del self._tables[len(self._queued) :]
            return
        self._queued, self._tables = [], []  # all queued after the SAVEPOINT that was sent
        try:
            self.run(f"ROLLBACK TO {name}")
            if not keep:
                self.run(f"RELEASE {name}")
        except psycopg.Error:  # the connection is gone: the caller's error says why
            pass
