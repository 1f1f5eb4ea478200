"""The PostgreSQL Store: many worker processes on many machines share one database.

Connections come from a psycopg pool. A write transaction (``transaction()``) runs on one pooled
connection under READ COMMITTED; each verb runs in a SAVEPOINT, so a refused verb (a lost lease)
leaves the rest of a group-commit transaction intact. Reads outside a transaction see committed
state; ``load_run`` reads in one REPEATABLE READ snapshot.

Decisions that several processes may take at once are made exact by the database, not by this
process (see ``docs/design.md``, "PostgreSQL"): row locks on rows that exist (a run's queue row
is locked by whoever leases, commits or cancels the run), ``INSERT … ON CONFLICT`` where the row
that comes back decides, transaction-level advisory locks keyed by the name of state that may
not have a row yet, ``FOR UPDATE SKIP LOCKED`` for leasing and compare-and-set for cron ticks.

Time: the engine's clock, checked against the database's at ``migrate()``: a machine whose clock
is further than ``max_clock_skew`` seconds from the server's is refused (``ConfigError``), so
lease expiries and due times written by different machines agree within that bound; a worker
measures it again while it runs (``engine/_clock_watch.py``).

Errors: a lost connection, a server shutting down, a deadlock or serialization failure, a full
disk or too many connections are ``StoreUnavailable`` (workers back off and reconnect; the pool
replaces broken connections); any other database error is a ``StoreError`` naming the database.
While the server is down a call waits at most ``connect_timeout`` for a connection, then raises
``StoreUnavailable``; the first call once it is back is served. A round trip the server does not
answer within ``answer_timeout`` (a server whose processes stopped, a storage stall) has its
connection cut and raises ``StoreUnavailable`` too (``_answers``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import psycopg
import psycopg_pool

from stepline.errors import ConfigError, StoreUnavailable
from stepline.store._catalog import TriggerCatalog
from stepline.store._copy import Row, Table
from stepline.store.interface import Conflict, Replay, WouldBlock
from stepline.store.postgres import _alone, _answers, _copy, _database, _pipeline
from stepline.store.postgres import _upkeep_queries as uq
from stepline.store.postgres._alone import commit_steps, owner_of_lone_steps
from stepline.store.postgres._commit_end import flushed, last_on_loop, last_statements
from stepline.store.postgres._handoffs import HandOffs
from stepline.store.postgres._hints import Hints, LeaseTokens
from stepline.store.postgres._kept import LoopConnections
from stepline.store.postgres._leases import lease_named_alone
from stepline.store.postgres._prepared import commit_kept
from stepline.store.postgres._statements import Spoiled, Statements
from stepline.store.postgres._take_gates import TakeGates
from stepline.store.postgres._timeouts import timeouts
from stepline.store.postgres.presence import Presence
from stepline.store.postgres.reads import PostgresReads, raising_store_errors
from stepline.store.postgres.tx import PostgresTx
from stepline.store.postgres.wakeups import WakeupListener
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    FunctionSet,
    Lease,
    PassCommit,
)

DEFAULT_MAX_CLOCK_SKEW = 1.0


def _each(tx: PostgresTx, jobs: Sequence[Callable[[PostgresTx], Any]]) -> list[Any]:
    """Each job's result, in order, the running job's index told to the statements."""
    results = []
    statements = tx.statements
    for index, job in enumerate(jobs):
        statements.job = index
        results.append(job(tx))
    return results


class PostgresStore(PostgresReads):
    """A Store in a PostgreSQL database (``url``: ``postgresql://user@host:port/dbname``;
    ``answer_timeout``: the seconds within which the server must answer each round trip, else
    the connection is cut and the call raises ``StoreUnavailable``; 0: no deadline; None: the
    URL's ``answer_timeout``, else ``DEFAULT_ANSWER_TIMEOUT``)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 10,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
        connect_timeout: float | None = None,
        answer_timeout: float | None = None,
    ) -> None:
        self.max_clock_skew = max_clock_skew
        url, connect_timeout, answer_within = timeouts(url, connect_timeout, answer_timeout)
        super().__init__(url, max_connections, connect_timeout, answer_within)
        # the connections of its own (not the pools') end on a silent link too, and on a
        # server that does not answer (_answers.connect)
        self._links = {
            **_database.link_options(url, connect_timeout),
            _answers.ANSWER_WITHIN: answer_within,
        }
        # the sessions of its own (presence locks, take gates, the wake-up listener) connect
        # within its connect timeout too (libpq's: whole seconds)
        self._sessions = {**self._links, "connect_timeout": max(1, int(self.connect_timeout))}
        self._presence = Presence(url, self._sessions)  # its workers shown alive (presence.py)
        self._gates = TakeGates(url, self._sessions)  # the gates its refused takes closed
        self._tokens = LeaseTokens()  # the leases it took lately (see PostgresTx.commit_pass)
        self._hints = Hints()  # what its transactions found lately (optimistic assumptions)
        self._catalog = TriggerCatalog()  # the trigger catalog last read (see store/_catalog)
        self._loop_conns = LoopConnections()  # the read pool's connection each loop keeps
        self._listeners: dict[object, WakeupListener] = {}  # watch(): by their on_wake
        self._handoffs = HandOffs(self._tokens)  # the leases wake-ups handed to its workers

    def watch(self, on_wake: Callable[[Sequence[tuple[str, str]]], None]) -> Callable[[], None]:
        """Call ``on_wake`` (from a listening thread) after every committed transaction of any
        process that may have made work due, with the new runs it names, if any
        (``LISTEN/NOTIFY``, see ``wakeups``). Again with the same ``on_wake``: its listener,
        told that a running loop may read (``WakeupListener.attach``)."""
        listener = self._listeners.get(on_wake)
        if listener is not None and not listener.stopped:
            listener.attach()
            return listener.stop
        listener = WakeupListener(self.url, on_wake, self._handoffs.put, self._sessions)
        self._listeners[on_wake] = listener
        listener.start()
        return listener.stop

    def close(self) -> None:
        self._loop_conns.close()
        self._presence.close()
        self._gates.close()
        super().close()

    # -- schema -----------------------------------------------------------------------------------
    def migrate(self, *, force: bool = False) -> None:
        """Bring the schema up to date, then check this machine's clock against the server's.
        Raises ``ConfigError`` for a database that holds another application's tables, that a
        newer Stepline made, that cannot be used, or whose clock is too far from this machine's;
        ``StoreUnavailable`` when the server cannot be reached for now. No PostgreSQL migration
        needs the workers of the version before stopped yet (SQLite's ``STOP_WORKERS_FIRST``),
        so ``force`` changes nothing here."""
        try:
            with self._conn() as conn:
                _database.migrate(conn, self.label)
            skew, took = self._quickest_skew()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            found = self._translated(exc)
            if isinstance(found, StoreUnavailable):
                raise found from None
            raise ConfigError(f"cannot use the database {self.label}: {exc}") from None
        # the server read its clock somewhere within the round trip: refused only beyond the
        # bound all over it (a slow answer is not a skewed clock; the workers' clock watch
        # measures again, by the same rule)
        nearest = math.copysign(max(0.0, abs(skew) - took / 2), skew)
        refused = self.clock_refusal(skew) if self.clock_refusal(nearest) is not None else None
        if refused is not None:
            raise ConfigError(f"cannot use the database {self.label}: {refused}")

    def _quickest_skew(self, tries: int = 3) -> tuple[float, float]:
        """(``clock_skew``, the seconds its round trip took) of the quickest of up to ``tries``
        measurements, stopping at one quick enough to tell (a tenth of the bound)."""
        quickest: tuple[float, float] | None = None
        for _ in range(tries):
            start = time.monotonic()
            skew = self.clock_skew()
            took = time.monotonic() - start
            if quickest is None or took < quickest[1]:
                quickest = (skew, took)
            if took <= self.max_clock_skew / 10:
                break
        assert quickest is not None
        return quickest

    def schema_version(self) -> tuple[int, int]:
        """(the database's schema version, the newest this Stepline knows); 0: no schema.
        Read on a connection of its own, not a pool's: a look (``stepline db check``, ``db
        migrate status``) that cannot connect says why at once, where a pool tries again
        until its ``connect_timeout`` passes."""
        try:
            with _answers.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                client_encoding=_database.CLIENT_ENCODING,
                **self._links,
            ) as conn:
                return _database.schema_version(conn)
        except psycopg.Error as exc:
            raise self._translated(exc) from exc

    def clock_refusal(self, skew: float) -> str | None:
        """Why this machine may not use the database with ``skew`` (``clock_skew``): beyond
        ``max_clock_skew`` either way; None within it. Without the database's label: the
        clock watch's ``ClockSkewError`` carries it as its reason, which the server's
        answers show (``server/_problems.store_failure_text``: never the label)."""
        if abs(skew) <= self.max_clock_skew:
            return None
        ahead = -skew  # this machine's clock minus the server's
        side = "ahead of" if ahead > 0 else "behind"
        return (
            f"this machine's clock is {ahead:+.3f} s from the database server's ({side} "
            f"it; Stepline on PostgreSQL needs them within {self.max_clock_skew} s: lease "
            "expiries and due times are compared across machines): synchronize the clocks (NTP)"
        )

    def clock_skew(self, now: Callable[[], float] | None = None) -> float:
        """The server's clock minus this machine's (``now``: the engine's clock; None: the
        system's), in seconds (measured at the middle of one round trip)."""
        now = now or time.time
        with self._conn() as conn:
            before = now()
            row = conn.execute(uq.SERVER_TIME).fetchone()
            after = now()
        assert row is not None
        return float(row[0]) - (before + after) / 2

    # -- transactions -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        """A write transaction, each verb in a savepoint. ``Replay`` when a statement sent
        outside every savepoint failed and the caller went on (nothing was committed: the
        writer then applies each job of the batch alone); ``Conflict`` when the server ended
        it on a conflict with another transaction (a deadlock, a serialization failure: one
        of this process's own, since its thread and event loop commit at once) and nothing of
        it committed."""
        statements = None
        try:
            with self._conn() as conn:
                tx = PostgresTx(
                    conn,
                    self._presence,
                    self._tokens,
                    hints=self._hints,
                    catalog=self._catalog,
                    gates=self._gates,
                )
                statements = tx.statements
                with statements.transaction(lambda: last_statements(tx)):
                    yield tx
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if _database.conflicted(exc) and not (statements and statements.maybe_committed):
                raise Conflict(str(exc)) from exc
            raise self._translated(exc) from exc
        except Spoiled as exc:
            raise Replay(str(exc)) from exc

    @contextmanager
    def optimistic_transaction(self) -> Iterator[PostgresTx]:
        """``transaction()`` without a savepoint per verb and with lease checks made by the
        server (``_statements``: optimistic): ``Replay`` when anything failed in it (a job's
        exception, a statement the server refused, a lease lost); a lost connection is
        ``StoreUnavailable`` as in ``transaction()``, and so is a failed ``COMMIT`` round trip
        after which the transaction may have committed (never made again: that would apply
        its jobs twice). Its connection is not checked before use: its first round trip fails
        when the connection had ended, and the transaction is then made again carefully
        (``Replay``) on a checked one. That round trip carries the ``COMMIT`` (a transaction
        that sends everything at once: an ingest, a batch of pass commits) only when the
        connection's socket has nothing to read, which one the server ended has
        (``_statements._quiet``); else an empty statement checks the connection first."""
        statements = None
        try:
            if not self._opened:
                self._open()
            # a connection of the read pool, not checked before use: the transaction's first
            # round trip is its check (a round trip less when that is a read, as a lease's)
            with self._read_pool.connection() as conn:
                tx = PostgresTx(
                    conn,
                    self._presence,
                    self._tokens,
                    True,
                    self._hints,
                    self._catalog,
                    self._gates,
                )
                statements = tx.statements
                statements.unchecked = True
                with tx.statements.transaction(lambda: last_statements(tx)):
                    yield tx
                if tx.marked:  # committed
                    self._tokens.mark_running(tx.marked)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if statements is not None and statements.maybe_committed:
                raise StoreUnavailable(
                    f"the commit's outcome is unknown: {exc}", self.label
                ) from exc
            if statements is not None and statements.stale and not _answers.cut(exc):
                # its first round trip failed: nothing of it committed; made again carefully,
                # on a checked connection (the pool drops the broken one, and its other idle
                # ones are checked: a restarted server ended them all). Not when the server
                # did not answer it: it would wait for that server again, on each of them
                self._read_pool.check()
                raise Replay(f"the connection had ended: {exc}") from exc
            if isinstance(exc, psycopg.Error) and exc.sqlstate and exc.sqlstate[:2] != "08":
                raise Replay(str(exc)) from exc  # the server refused it: never committed
            if isinstance(exc, psycopg.DataError):  # psycopg refused a value before sending it
                raise Replay(str(exc)) from exc  # (a NUL in a text): never committed either
            raise self._translated(exc) from exc
        except Exception as exc:  # a job's own exception (Spoiled: one it caught)
            self._unknown_outcome(statements, exc)
            raise Replay(str(exc)) from exc

    def _unknown_outcome(self, statements: Statements | None, exc: Exception) -> None:
        """Raise ``StoreUnavailable`` (outcome unknown) for an error that came after the commit
        may have been sent (``maybe_committed``): never a ``Replay``, which would apply the jobs
        a second time."""
        if statements is not None and statements.maybe_committed:
            raise StoreUnavailable(f"the commit's outcome is unknown: {exc!r}", self.label) from exc

    async def commit_on_loop(self, jobs: Sequence[Callable[[PostgresTx], Any]]) -> list[Any]:
        """``LoopCommits``: ``optimistic_transaction()`` of ``jobs`` on the running event loop,
        on the connection the loop keeps (``_kept``), or, while that one is busy, on an idle
        connection of the read pool (none idle: ``WouldBlock``), its commit's round trip
        awaited (``Statements.commit_on_loop``). A failure maps as there, except that a
        round trip other than the commit's is ``WouldBlock``, and a stale connection is not
        checked here (``Replay``: made again carefully, on a checked connection)."""
        return await self._on_loop(jobs, None, None)

    async def commit_steps_on_loop(
        self,
        commit: PassCommit,
        now: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> bool:
        """``LoopCommits.commit_steps_on_loop``: ``commit`` of step results alone (``_alone``),
        its statements queued straight, as ``commit_on_loop`` of a job of its ``commit_pass``
        commits it (True: applied), its run marked running (its start ``now`` if it has none)
        when no committed commit of its lease marked it yet (the pass's first commit);
        ``WouldBlock`` (nothing sent) for any other commit, and for that first commit
        without ``now``. ``loop``: the running loop, if the caller holds it."""
        tokens = self._tokens
        owner = owner_of_lone_steps(commit, tokens)
        if owner is None:
            raise WouldBlock("not a commit of step results alone")
        token, run_id = commit.lease_token, commit.run_id
        first = not tokens.marked_running(token, run_id)
        if first and now is None:
            raise WouldBlock("the pass's first commit, without its time")
        if not first and self._opened:  # the usual: a later commit of a pass, on the loop's
            if loop is None:  # own connection (``_steps_on_kept``)
                loop = asyncio.get_running_loop()
            applied = await self._steps_on_kept(commit, owner, loop)
            if applied is not None:
                return applied
        results: list[bool] = await self._on_loop((), commit, owner, now if first else None, loop)
        if first:  # committed: its later commits need not mark it (PostgresTx.mark_running)
            tokens.mark_running([(token, run_id)])
        return results[0]

    async def _steps_on_kept(
        self, commit: PassCommit, owner: str, loop: asyncio.AbstractEventLoop
    ) -> bool | None:
        """``_on_loop`` of a lone step commit that does not mark its run (not the pass's
        first), on the connection ``loop`` keeps (None: it keeps none free now, nothing
        taken: ``_on_loop`` then): its one statement prepared there before sent by
        ``_prepared.commit_kept`` (a third fewer bytecodes a step than ``commit_steps``'s
        layers), else ``commit_steps`` on the same connection; failures mapped as there."""
        kept = self._loop_conns.take(loop, self._read_pool)
        if kept is None:
            return None
        statements = Statements(kept.conn, optimistic=True)
        statements.unchecked = True
        statements.watch = kept
        try:
            prepared = _alone.one_step_values(commit, owner, self._tokens)
            if prepared is not None and await commit_kept(statements, kept, *prepared):
                return True
            return await commit_steps(statements, commit, owner, self._tokens)
        except WouldBlock:
            raise
        except Exception as exc:
            self._loop_failed(statements, kept.conn, exc)
        finally:
            self._loop_conns.done(kept)  # kept, or given back

    async def _on_loop(
        self,
        jobs: Sequence[Callable[[PostgresTx], Any]],
        steps: PassCommit | None,
        owner: str | None,
        started_at: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[Any]:
        """``commit_on_loop`` of ``jobs``, or of ``steps``'s statements queued straight (its
        run marked running with ``started_at`` if given), on ``loop`` (the running one)."""
        if not self._opened:
            self._open()
        if loop is None:
            loop = asyncio.get_running_loop()
        kept = self._loop_conns.take(loop, self._read_pool)
        if kept is not None:
            conn = kept.conn
        else:
            taken = _database.take_idle(self._read_pool)
            if taken is None:
                raise WouldBlock("no idle connection")
            conn = taken
        statements = None
        reserved: list[psycopg.Connection[Any]] = []  # for a flush waited for after the commit
        try:
            if kept is None and not _pipeline.loop_waits(loop, conn):
                raise WouldBlock("the event loop cannot wait on a socket (no add_reader)")
            if steps is not None:
                assert owner is not None
                statements = Statements(conn, optimistic=True)
                statements.unchecked = True
                statements.watch = kept
                return [await commit_steps(statements, steps, owner, self._tokens, started_at)]
            tx = PostgresTx(
                conn, self._presence, self._tokens, True, self._hints, self._catalog, self._gates
            )
            statements = tx.statements
            statements.unchecked = True
            statements.watch = kept
            results = await statements.commit_on_loop(
                lambda: _each(tx, jobs),
                lambda: last_on_loop(tx, loop, reserved, self._read_pool),
            )
            if tx.marked:
                self._tokens.mark_running(tx.marked)
            if reserved and tx.flushed is not None and tx.flushed.owed:
                flush = flushed(reserved.pop(), self._read_pool, self.label)
                tx.flushed.wait = loop.create_task(flush)
            return results
        except WouldBlock:
            raise
        except Exception as exc:
            self._loop_failed(statements, conn, exc)
        finally:
            for spare in reserved:  # its flush not sent (the commit failed)
                self._read_pool.putconn(spare)
            if kept is not None:
                self._loop_conns.done(kept)  # kept, or given back
            else:
                self._read_pool.putconn(conn)  # never waits: idle, or closed (replaced)

    def _loop_failed(
        self, statements: Statements | None, conn: psycopg.Connection[Any], exc: Exception
    ) -> NoReturn:
        """What a commit on the loop (``_on_loop``, ``_steps_on_kept``) that failed with
        ``exc`` (not ``WouldBlock``) on ``conn`` raises."""
        if isinstance(exc, psycopg.Error):
            assert statements is not None  # PostgresTx() sends nothing
            _database.forget_dropped(conn, exc)
            if statements.maybe_committed:
                raise StoreUnavailable(
                    f"the commit's outcome is unknown: {exc}", self.label
                ) from exc
            refused = isinstance(exc, psycopg.DataError)  # by psycopg too, before sending it
            stale = statements.stale and not _answers.cut(exc)  # (as optimistic_transaction)
            if stale or refused or (exc.sqlstate and exc.sqlstate[:2] != "08"):
                raise Replay(str(exc)) from exc  # nothing of it committed
            raise self._translated(exc) from exc
        # a job's own exception (Spoiled: one it caught)
        if statements is not None and statements.blocked:
            raise WouldBlock(str(exc), statements.read_by) from exc
        self._unknown_outcome(statements, exc)
        raise Replay(str(exc)) from exc

    def accept_handoffs(self, owner: str, ttl: float) -> None:
        """``HandedLeases`` (``_handoffs.HandOffs``)."""
        self._handoffs.accept(owner, ttl)

    def refuse_handoffs(self, owner: str) -> None:
        self._handoffs.refuse(owner)

    def take_handed(
        self, owner: str, run_ids: Iterable[str], now: float
    ) -> tuple[list[Lease], list[str]]:
        return self._handoffs.take(owner, run_ids, self._presence, now)

    async def lease_named_alone(
        self,
        owner: str,
        now: float,
        run_ids: Sequence[str],
        ttl: float,
        functions: FunctionSet,
        max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
    ) -> list[Lease]:
        """``NamedLeasesAlone`` (``_leases.lease_named_alone``): on the connection the loop
        keeps (``_kept``), or while that one is busy on an idle one of the read pool (none:
        ``WouldBlock``), as ``commit_on_loop``."""
        if not self._opened:
            self._open()
        loop = asyncio.get_running_loop()
        kept = self._loop_conns.take(loop, self._read_pool)
        conn = kept.conn if kept is not None else _database.take_idle(self._read_pool)
        if conn is None:
            raise WouldBlock("no idle connection")
        try:
            if kept is None and not _pipeline.loop_waits(loop, conn):
                raise WouldBlock("the event loop cannot wait on a socket (no add_reader)")
            return await lease_named_alone(
                conn,
                kept,
                self._presence,
                self._tokens,
                lambda: self.label,
                (owner, now, run_ids, ttl, functions, max_passes),
            )
        finally:
            if kept is not None:
                self._loop_conns.done(kept)
            else:
                self._read_pool.putconn(conn)  # never waits: idle, or closed (replaced)

    # -- copying a whole database (store/_copy.py) -------------------------------------------------
    @contextmanager
    def migrated_source(self, *, workers_alive: bool) -> Iterator[PostgresStore]:
        """The database, migrated in place: no PostgreSQL migration waits for the workers of
        the version before to stop (``migrate``)."""
        self.migrate()
        yield self

    @raising_store_errors
    def location(self) -> str:
        """The server (by its start time), the database and the schema."""
        with self._conn() as conn:
            return _copy.location(conn)

    @raising_store_errors
    def table_columns(self) -> dict[str, tuple[str, ...]]:
        with self._conn() as conn:
            return _copy.table_columns(conn)

    @contextmanager
    def snapshot(self) -> Iterator[_copy.PostgresSnapshot]:
        """A consistent read of the whole database (one REPEATABLE READ transaction). The copy's
        reads and writes of whole tables go without a deadline on the server's answers
        (``_answers.lifted``): a count or a batch of a large table may take long."""
        try:
            with self._snapshot() as conn, _answers.lifted(conn):
                yield _copy.PostgresSnapshot(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._translated(exc) from exc

    @raising_store_errors
    def load_rows(self, table: Table, rows: Sequence[Row]) -> None:
        with self._conn() as conn, _answers.lifted(conn):
            _copy.load_rows(conn, table, rows)

    @raising_store_errors
    def loaded(self, table: Table) -> None:
        with self._conn() as conn, _answers.lifted(conn):
            _copy.loaded(conn, table)

    @raising_store_errors
    def wipe(self) -> None:
        with self._conn() as conn, _answers.lifted(conn):
            _copy.wipe(conn)
