"""The PostgreSQL store's write verbs, inside one transaction on one connection.

Each verb runs in a SAVEPOINT (``psycopg``'s nested ``transaction()``), so a verb that fails
(a lost lease) is rolled back alone and the rest of a group-commit transaction commits. Every
read-then-write decision is exact with many processes writing at once; how, verb by verb:

- a run's queue row is locked (``FOR UPDATE``) by the lease that takes it (``SKIP LOCKED``: a
  row another worker is leasing is skipped, never waited for), by the pass commit that checks its
  fencing token, and by a cancellation, so these apply one after the other;
- sender ids: ``INSERT … ON CONFLICT DO UPDATE … WHERE seen_at <= horizon RETURNING``: the row
  that comes back says the id is new;
- idempotency keys, GCRA buckets (rate limit, throttle), singleton keys, debounce and batch rows,
  and concurrency keys at lease time are read after a transaction-level advisory lock on their
  name, held until commit: the next transaction deciding on the same name waits, then reads
  what this one wrote;
- a wait is decided by whoever deletes its row (resolved, timed out, or removed by a
  cancellation); a cron tick by a compare-and-set on ``next_at``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar, overload

import psycopg

from stepline.errors import LeaseLostError
from stepline.serde import dumps, loads
from stepline.store import _rows as shapes
from stepline.store._catalog import CatalogView, TriggerCatalog
from stepline.store._index_paths import IndexPaths
from stepline.store._ingest_rules import admit_taken, cancel_by, ingest
from stepline.store._pass_rules import commit_pass
from stepline.store._primitives import EndedRun
from stepline.store.capabilities import Flushed
from stepline.store.postgres import _admission, _handoffs, _leases, _matching, _rows, _upkeep
from stepline.store.postgres import _lease_queries as lq
from stepline.store.postgres import queries as q
from stepline.store.postgres._hints import Hints, LeaseTokens
from stepline.store.postgres._late_cancels import (
    events_received,
    give_back,
    late_cancels,
    note_unless_shared,
    take_inbox,
)
from stepline.store.postgres._merging import Later
from stepline.store.postgres._statements import Statements
from stepline.store.postgres._take_gates import TakeGates
from stepline.store.postgres.presence import Presence
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    AppRemoval,
    EventIngest,
    EventRecord,
    FunctionSet,
    HistoryRecord,
    InboxItem,
    IngestResult,
    Lease,
    NewRun,
    PassCommit,
    RunEnd,
    SpentRun,
    StepRecord,
    TriggerRow,
    WaitMatcher,
    WaitRecord,
    Wake,
)

T = TypeVar("T")


class _MadeOnce(Generic[T]):
    """``functools.cached_property`` without its lock: ``make(tx)`` at the first read, kept in
    the transaction's ``__dict__``, where later reads find it first (this is no data
    descriptor). On Python 3.11 ``cached_property`` takes a lock of its own (one for every
    instance, so every thread's transactions contend for it) at each first read: ~60
    bytecodes a property, and a send reads two; a transaction is used by one thread at a
    time."""

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._name = make.__name__
        self.__doc__ = make.__doc__

    @overload
    def __get__(self, tx: None, owner: type | None = None) -> _MadeOnce[T]: ...

    @overload
    def __get__(self, tx: object, owner: type | None = None) -> T: ...

    def __get__(self, tx: object, owner: type | None = None) -> T | _MadeOnce[T]:
        if tx is None:
            return self
        value = tx.__dict__[self._name] = self._make(tx)
        return value


class PostgresTx:
    """The write verbs of one transaction (``Store.transaction()``). Those of one concern are
    functions of the transaction in their own module, bound here as its methods (``_matching``,
    ``_admission``, ``_upkeep``) or called by them (``_leases``, ``_late_cancels``)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        presence: Presence | None = None,
        tokens: LeaseTokens | None = None,
        optimistic: bool = False,
        hints: Hints | None = None,
        catalog: TriggerCatalog | None = None,
        gates: TakeGates | None = None,
    ) -> None:
        self._s = self.statements = Statements(conn, optimistic)
        # an optimistic transaction's savepoints are marks (``_statements.Marked``, which keeps
        # no state of its own): one serves them all (a pass commit's job opens two)
        self._mark = self._s.savepoint() if optimistic else None
        self._gates = gates  # the gates of the buckets its takes were refused (_take_gates)
        self._catalog = catalog  # its view (_triggers) and _index: made when a verb needs them
        self._hints = self.hints = hints if hints is not None else Hints()
        self._presence = presence
        self._tokens = tokens if tokens is not None else LeaseTokens()
        # a commit_pass assuming its lease is held (see commit_pass): (run, token, owner), and
        # the lease row read along with its writes
        self._assumed: tuple[str, str, str] | None = None
        self._lease_read: Later | None = None
        # the lease token of each run whose lease a pass commit held (hold_lease), and those
        # whose run this (optimistic) transaction marked RUNNING (mark_running): the store
        # remembers them once it committed
        self._held: dict[str, str] = {}
        self.marked: list[tuple[str, str]] = []  # (token, run_id)
        self._locked: set[str] = set()  # advisory locks this transaction holds
        # whether a verb may have made work due for some worker (new, woken, rescheduled or
        # released runs, deferrals, schedules, resumed functions): the store then sends NOTIFY
        # before committing (wakeups.py). An ended run's freed concurrency slot: the statement
        # that drops its queue row notifies itself (drop_run_work)
        self.made_work = False
        # the (function id, run id) of the runs it created due now, without concurrency keys,
        # and not leased by itself: its NOTIFY names them when they are the only work it made
        # (a worker leases those with one statement: lease_named)
        self.new_runs: dict[str, str] = {}
        # those runs as made (the run, its creation and due times) and the events it stored:
        # a lease of them makes their state of them (_leases.lease_new_runs)
        self.created: dict[str, tuple[NewRun, float, float]] = {}
        self.stored: dict[str, EventRecord] = {}
        # whether the transaction must be on disk before it is acknowledged: not when it only
        # leased runs, renewed leases, looked for due crons and flushed debounces or batches
        # (verbs that pass durable=False). Such a transaction lost in a crash of the server
        # leaves those runs due again, as if it never happened, and any durable commit after
        # it (a step's) writes it to disk first: the WAL is flushed in order
        self.durable = False

    @_MadeOnce
    def _triggers(self) -> CatalogView:
        """The trigger catalog as this transaction sees it (made at its first use: most
        transactions, a step's commit, never look)."""
        s = self._s  # (not self: no cycle through the transaction, freed when it ends)
        return (self._catalog or TriggerCatalog()).view(
            lambda: int(s.run(q.CATALOG_VERSION).fetchall()[0][0]),
            lambda: [TriggerRow(*r) for r in s.run(q.CATALOG_ROWS)],
        )

    @_MadeOnce
    def _index(self) -> IndexPaths:
        """The index paths this transaction read or wrote (made at its first use)."""
        s = self._s  # (not self: see _triggers)
        return IndexPaths(lambda query, p: s.run(query, p).fetchall(), s.write)

    # -- helpers ----------------------------------------------------------------------------------
    def _savepoint(self, durable: bool = True) -> AbstractContextManager[Statements]:
        """A savepoint (``_statements``): a verb that raises is rolled back alone. The advisory
        locks taken inside it are released by the rollback, so they are forgotten too, and so
        is what the transaction read of the index (a take may hold a name's bucket, start runs
        with cancel matchers and commit before the transaction's next ingestion of that name).
        ``durable=False``: the verb's writes need not be on disk when the transaction is
        acknowledged (see ``durable``). In an optimistic transaction, a mark only (nothing is
        rolled back alone there: whatever raises spoils the whole transaction)."""
        if durable:
            self.durable = True
        if self._mark is not None:
            return self._mark  # a mark (_statements.Marked): its statements
        return self._careful_savepoint()

    @contextmanager
    def _careful_savepoint(self) -> Iterator[Statements]:
        locked = set(self._locked)
        # what the commit's notification says: never work a rolled-back verb made
        made_work, new_runs = self.made_work, dict(self.new_runs) if self.new_runs else None

        def undo() -> None:
            self._locked = locked
            self._index.forget()
            self._triggers.forget()
            self.made_work, self.new_runs = made_work, new_runs or {}

        with self._s.savepoint(undo):
            yield self._s

    def _lock(self, name: str) -> None:
        """Hold the advisory lock ``name`` until the transaction ends (taken before the next
        statement runs: the statements are executed in order)."""
        if name not in self._locked:
            self._s.write(q.LOCK_KEY, (name,))
            self._locked.add(name)

    # -- events -----------------------------------------------------------------------------------
    def stored_event_ids(self, internal_ids: Sequence[str]) -> set[str]:
        with self._savepoint() as s:
            return {r[0] for r in s.run(q.STORED_EVENT_IDS, (list(internal_ids),))}

    def run_events(self, run_id: str) -> list[EventRecord]:
        with self._savepoint() as s:
            row = s.run(q.RUN_EVENT_IDS, (run_id,)).fetchone()
            return [] if row is None else _rows.select_events(s.conn, loads(row[0]))

    def savepoint(self) -> AbstractContextManager[Any]:
        if self._mark is not None:
            return self._mark
        return self._savepoint_none()

    @contextmanager
    def _savepoint_none(self) -> Iterator[None]:
        with self._savepoint(durable=False):  # the verbs inside it say whether they are
            yield

    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        with self._savepoint() as s:
            # optimistic (a send, usually): its statements with their generic plans, each
            # prepared at its first execution (``_matching``), where each of a connection's
            # first nine or so planned them for their parameters (0.3-0.5 ms of the server's
            # time a send, the check of its names' waits and matchers 0.19-0.36 of it)
            generic = s.optimistic
            if generic:
                s.write(lq.GENERIC_PLANS)
            note_unless_shared(self, items)
            _matching.read_index_ahead(self, {item.event.name for item in items}, now)
            results = ingest(self, items, now, wait_matches)
            if generic:
                s.write(lq.DEFAULT_PLANS)
            return results

    # -- the trigger catalog and the inbox -------------------------------------------------------
    def sync_triggers(
        self,
        app_id: str,
        rows: Sequence[TriggerRow],
        now: float,
        served: FunctionSet | None = None,
    ) -> None:
        with self._savepoint() as s:
            # two registrations of one app: one by one, the later reading (READ COMMITTED:
            # each statement sees what committed before it) the earlier's worker and rows
            self._lock(f"triggers\x1f{app_id}")
            self._triggers.replace(
                app_id,
                rows,
                now,
                served,
                q,
                lambda sql, p: s.run(sql, p).fetchall(),
                s.write,
                s.write_many,
            )

    def remove_app(self, app_id: str, now: float, force: bool) -> AppRemoval:
        with self._savepoint() as s:
            # the lock sync_triggers takes: a registration of the app committed before it is
            # seen alive here (refused unless forced); one waiting for it re-adds the app after
            self._lock(f"triggers\x1f{app_id}")
            live = int(s.run(q.LIVE_WORKERS_OF_APP, (app_id, now)).fetchall()[0][0])
            if live and not force:
                return AppRemoval(app_id, live, True, 0, 0)
            # the rows of its catalog's functions are skipped (as a registration removing them)
            triggers, skipped = self._triggers.replace(
                app_id,
                (),
                now,
                None,
                q,
                lambda sql, p: s.run(sql, p).fetchall(),
                s.write,
                s.write_many,
            )
            dropped = skipped + s.run(q.DROP_INBOX_OF_APP, (app_id,)).rowcount
            sdk = s.run(q.DROP_SDK_APPS_OF_APP, (app_id,)).rowcount
        return AppRemoval(app_id, live, False, triggers, dropped, sdk)

    def listeners(self, event_name: str) -> Sequence[tuple[str, str]]:
        if self._s.optimistic:
            # the catalog this process knows, checked by a statement sent with the next round
            # trip: a different version fails the transaction, which is made again reading it
            version = self._triggers.assumed()
            if version is not None:
                self._s.write(q.CATALOG_IS, (version,))
        return self._triggers.listeners(event_name)

    def deliver(self, rows: Sequence[tuple[str, str, str]], now: float) -> None:
        self.made_work = True  # the receiving apps' workers take them (NOTIFY wakes them)
        self._s.write_many(q.DELIVER, [(*row, now) for row in rows])

    def give_back(self, rows: Sequence[tuple[str, str, str]], received_at: float) -> None:
        give_back(self, rows, received_at)

    def take_inbox(self, functions: FunctionSet, limit: int) -> Callable[[], list[InboxItem]]:
        return take_inbox(self, functions, limit)

    def admit_taken(self, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
        with self._savepoint() as s:
            results = admit_taken(self, items, now)
            if not s.optimistic:  # its statements' errors raise here, rolled back alone
                s.flush()
            return results

    def events_received(
        self, names: Sequence[str], after: tuple[float, str], until: float
    ) -> list[tuple[float, EventRecord]]:
        return events_received(self, names, after, until)

    def late_cancels(self, now: float, wait_matches: WaitMatcher) -> list[IngestResult]:
        with self._savepoint(durable=False):  # durable if it cancelled (cancel_run's own)
            return late_cancels(self, now, wait_matches)

    # -- EventPrimitives (_matching.py; store/_primitives: each states how it is exact) -----------
    insert_events = _matching.insert_events
    wait_paths = _matching.wait_paths
    unindexed_waits = _matching.unindexed_waits
    indexed_waits = _matching.indexed_waits
    matcher_paths = _matching.matcher_paths
    unindexed_matchers = _matching.unindexed_matchers
    indexed_matchers = _matching.indexed_matchers
    delete_wait = _matching.delete_wait
    resume_waits = _matching.resume_waits

    # -- RunPrimitives ----------------------------------------------------------------------------
    def mark_cancelled(self, run_id: str, now: float, error: dict[str, Any]) -> EndedRun | None:
        s = self._s
        # the queue row first, locked (as a lease and a commit take it), then the run row: the
        # update's own WHERE decides between two cancels, or a cancel and a pass ending the run
        s.write(q.LEASE_TOKEN, (run_id,))
        row = s.run(q.CANCEL_RUN, (now, shapes.json_or_none(error), run_id)).fetchone()
        if row is None:
            return None
        return EndedRun(str(row[0]), row[1], row[2])

    def drop_run_work(self, run_id: str) -> None:
        # the statement wakes the workers itself when the run's lease held a concurrency slot:
        # an ended run without one frees nothing another run waits for (its own pass's end
        # wakes the worker that ran it)
        self._s.write(q.DROP_RUN_WORK, (run_id,) * 4)

    def append_history(self, records: Sequence[HistoryRecord], worker_id: str | None) -> None:
        rows = [shapes.history_params(h, worker_id) for h in records]
        self._s.write_many(q.INSERT_HISTORY, rows, "history")

    def settle_pending_step(self, wake: Wake, now: float) -> bool:
        settle = (
            wake.status,
            wake.output_json,
            shapes.json_or_none(wake.error),
            now,
            wake.run_id,
            wake.step_hash,
        )
        return bool(self._s.run(q.SETTLE_PENDING_STEP, settle).rowcount == 1)

    def wake_run(self, run_id: str, now: float) -> None:
        self.made_work = True
        self._s.write(q.WAKE, (now, run_id), "queue")

    # -- PassPrimitives ---------------------------------------------------------------------------
    def hold_lease(self, run_id: str, token: str) -> str | None:
        assumed = self._assumed
        if assumed is not None and assumed[:2] == (run_id, token):
            # locked first all the same (the statements run in order); checked by commit_pass,
            # or, in an optimistic transaction, by the server (a lost lease fails the statement)
            if self._s.optimistic:
                self._s.hold(run_id, token)
            else:
                self._lease_read = self._s.read_later(q.LEASE_TOKEN, (run_id,))
            self._held[run_id] = token
            return assumed[2]
        row = self._s.run(q.LEASE_TOKEN, (run_id,)).fetchone()  # FOR UPDATE: held to commit
        if row is None or row[0] != token:
            return None
        self._held[run_id] = token
        return str(row[1])

    def cancelled_lease(self, run_id: str) -> tuple[str, str | None] | None:
        row = self._s.run(q.CANCELLED_LEASE, (run_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return str(row[0]), row[1]

    def put_steps(self, steps: Sequence[StepRecord]) -> None:
        self._s.write_many(q.UPSERT_STEP, [shapes.step_params(s) for s in steps], "steps")

    def put_steps_if_unsettled(self, steps: Sequence[StepRecord]) -> None:
        self._s.write_many(q.INSERT_STEP_IF_UNSETTLED, [shapes.step_params(s) for s in steps])

    def insert_waits(self, waits: Sequence[WaitRecord]) -> None:
        for wait in waits:
            self._s.write(q.INSERT_WAIT, (*shapes.wait_params(wait), wait.step_id), "waits")
            if wait.index_path is None:
                self._index.added_unindexed(q.WAITS_UNINDEXED, wait.event_name)
            else:
                self._index.add_indexed_path(
                    q.INSERT_WAIT_PATH, q.WAIT_PATHS, wait.event_name, wait.index_path
                )

    def mark_running(self, run_id: str, started_at: float) -> None:
        token = self._held.get(run_id)
        if token is not None and self._tokens.marked_running(token, run_id):
            # a committed commit of the lease held marked the run, which stays marked until
            # the lease ends (LeaseTokens.mark_running): the update would change nothing
            return
        self._s.write(q.MARK_RUNNING, (started_at, run_id), "runs")
        if token is not None and self._s.optimistic:  # all or nothing: no savepoint undoes it
            self.marked.append((token, run_id))

    def end_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        # no wake-up of its own: drop_run_work's, if its lease held a concurrency slot
        self._s.write(
            q.END_RUN_TERMINAL,
            (
                end.status,
                end.output_json,
                shapes.json_or_none(end.error),
                now,
                end.attempt,
                started_at,
                run_id,
            ),
            "runs",
        )

    def suspend_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        self.made_work = True
        self._s.write(q.END_RUN_SUSPENDED, (end.status, end.attempt, started_at, run_id), "runs")
        self._s.write(q.RESCHEDULE, (now, end.due_at, run_id), "queue")

    # -- passes -----------------------------------------------------------------------------------
    def commit_pass(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult] | None:
        """The shared sequence; hold_lease locks the run's queue row. A lease this process
        took is assumed held (the usual case): its lock and token are read in the round trip
        that sends the commit's writes, then checked; a lease found lost or cancelled undoes
        all of it, and the commit is made again deciding at each step."""
        owner = self._tokens.owner(commit.lease_token)
        if owner is not None and self._s.optimistic:
            # held, or the server fails the transaction, which is made again carefully
            with self._savepoint():
                self._assumed = (commit.run_id, commit.lease_token, owner)
                try:
                    return self._commit(commit, now, wait_matches)
                finally:
                    self._assumed = None
        if owner is not None:
            try:
                return self._commit_assuming(commit, now, wait_matches, owner)
            except _NotHeld:
                pass
        with self._savepoint():
            return self._commit(commit, now, wait_matches)

    def _commit(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult] | None:
        """The shared sequence, the index of the events the pass sent read ahead as an ingest
        reads it (in an optimistic transaction, an event name never found with waits or cancel
        matchers costs no read: ``_matching.read_index_ahead``)."""
        if commit.events:
            note_unless_shared(self, commit.events)
            _matching.read_index_ahead(self, {item.event.name for item in commit.events}, now)
        return commit_pass(self, commit, now, wait_matches)

    def _commit_assuming(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher, owner: str
    ) -> list[IngestResult] | None:
        with self._savepoint() as s:
            self._assumed, self._lease_read = (commit.run_id, commit.lease_token, owner), None
            try:
                results = self._commit(commit, now, wait_matches)
            finally:
                self._assumed = None
            read, self._lease_read = self._lease_read, None
            s.flush()
            row = read.rows[0] if read is not None and read.rows else None
            if row is None or row[0] != commit.lease_token:
                raise _NotHeld  # the savepoint undoes everything the commit wrote
            return results

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        if not run_ids:
            return []
        with self._savepoint(durable=False) as s:
            kept = {r[0] for r in s.run(lq.HEARTBEAT, (now + ttl, list(run_ids), owner))}
        return [run_id for run_id in run_ids if run_id not in kept]

    def release_owner(self, owner: str, now: float) -> int:
        self.made_work = True
        with self._savepoint() as s:
            return s.run(lq.RELEASE_OWNER, (now, now, owner)).rowcount

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        with self._savepoint() as s:
            row = s.run(q.LEASE_TOKEN, (run_id,)).fetchone()
            if row is None or row[0] != lease_token:
                raise LeaseLostError(f"run {run_id}: lease lost")
            worker = row[1]
            # the rows this statement deletes are the waits it times out: a wait an event
            # resolved (deleted) first is not among them, and a stale one's row goes unclaimed
            rows = s.run(q.DELETE_EXPIRED_WAITS_OF_RUN, (run_id, now))
            expired = [shapes.wait_record(r[:-1]) for r in rows if r[-1]]
            for wait in sorted(expired, key=lambda w: w.created_at):
                s.write(q.COMPLETE_STEP, (b"null", now, run_id, wait.step_hash))
                s.write(q.INSERT_TIMED_OUT_HISTORY, (run_id, now, run_id, wait.step_hash, worker))
            return [w.step_hash for w in expired]

    def overdue_starts(
        self, now: float, functions: FunctionSet, limit: int
    ) -> list[tuple[str, str, float]]:
        params = {
            "apps": [functions.app_id, ""],
            "fns": list(functions.function_ids),
            "now": now,
            "limit": limit,
        }
        with self._savepoint(durable=False) as s:
            return [(r[0], r[1], r[2]) for r in s.run(lq.OVERDUE_STARTS, params)]

    def cancel_run(
        self, run_id: str, now: float, reason: str, event_id: str | None = None
    ) -> str | None:
        with self._savepoint():
            return cancel_by(self, run_id, now, reason, event_id)

    # -- admission state (FlowState, DeferralState, AdmissionTx: _admission.py) -------------------
    record_skip = _admission.record_skip
    add_event_effects = _admission.add_event_effects
    create_run = _admission.create_run
    idempotency_seen = _admission.idempotency_seen
    remember_idempotency = _admission.remember_idempotency
    gcra_bucket = _admission.gcra_bucket
    set_gcra_bucket = _admission.set_gcra_bucket
    active_singleton_runs = _admission.active_singleton_runs
    get_deferral = _admission.get_deferral
    put_deferral = _admission.put_deferral
    delete_deferral = _admission.delete_deferral
    flush_deferrals = _admission.flush_deferrals

    # -- schedules, workers, retention, SDK apps, pauses, replays (_upkeep.py) --------------------
    sync_crons = _upkeep.sync_crons
    due_crons = _upkeep.due_crons
    advance_cron = _upkeep.advance_cron
    adopt_unowned = _upkeep.adopt_unowned
    register_worker = _upkeep.register_worker
    offer_handoffs = _handoffs.offer
    touch_worker = _upkeep.touch_worker
    unregister_worker = _upkeep.unregister_worker
    purge_expired = _upkeep.purge_expired
    purge_before = _upkeep.purge_before

    def purge_resolved_waits(self, limit: int) -> int:
        return 0  # a wait is deleted as it is resolved (no index page rewritten: MVCC)

    put_sdk_app = _upkeep.put_sdk_app
    set_paused = _upkeep.set_paused
    replay_run = _upkeep.replay_run

    # -- leasing (store/postgres/_leases.py) -------------------------------------------------------
    def lease_due(
        self,
        owner: str,
        now: float,
        limit: int,
        ttl: float,
        functions: FunctionSet,
        max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
        due_by: float | None = None,
        failed: list[SpentRun] | None = None,
    ) -> list[Lease]:
        """``_leases.lease_due``: due runs of ``functions`` in the fair order."""
        return _leases.lease_due(
            self, owner, now, limit, ttl, functions, max_passes, due_by, failed
        )

    def lease_named(
        self,
        owner: str,
        now: float,
        run_ids: Sequence[str],
        ttl: float,
        functions: FunctionSet,
        max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
    ) -> Callable[[], list[Lease]]:
        """``_leases.lease_named``: the runs a wake-up named, in one statement."""
        return _leases.lease_named(self, owner, now, run_ids, ttl, functions, max_passes)

    leasable_new_runs = _leases.leasable_new_runs  # LeasesNewRuns: with the commit
    lease_new_runs = _leases.lease_new_runs
    flushed: Flushed | None = None  # FlushesLater (_leases.flush_later): a flush owed after
    flush_later = _leases.flush_later

    def spent_runs(self, run_ids: Sequence[str], max_passes: int) -> list[SpentRun]:
        if self._s.optimistic:  # none (the usual case), or the server fails the transaction
            self._s.write(q.NONE_SPENT, (list(run_ids), max_passes))
            return []
        rows = self._s.run(q.PASSES_SPENT, (list(run_ids), max_passes))
        return [SpentRun(*r) for r in rows]

    def fail_run(self, run_id: str, error: dict[str, Any], now: float) -> None:
        self._s.write(q.FAIL_RUN, (dumps(error).decode(), now, run_id), "runs")

    mark_steps_running = _leases.mark_steps_running  # (a step run under its lease)


class _NotHeld(Exception):
    """A commit assumed its lease held, and it was not (commit_pass decides again)."""
