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
from operator import itemgetter
from typing import Any

import psycopg

from stepline._ids import new_id
from stepline.errors import LeaseLostError
from stepline.serde import dumps, dumps_exact, loads
from stepline.store import _rows as shapes
from stepline.store._admission_rules import (
    IDEMPOTENCY_WINDOW,
    DeferralRow,
    flush_due,
    new_run_to_dict,
)
from stepline.store._catalog import TriggerCatalog
from stepline.store._index_paths import IndexPaths
from stepline.store._ingest_rules import admit_taken, cancel_by, ingest
from stepline.store._pass_rules import commit_pass
from stepline.store._primitives import EndedRun, ResumedWait
from stepline.store.postgres import _leases, _rows
from stepline.store.postgres import queries as q
from stepline.store.postgres._hints import Hints, LeaseTokens
from stepline.store.postgres._late_cancels import (
    events_received,
    late_cancels,
    note_unless_shared,
    take_inbox,
)
from stepline.store.postgres._statements import Later, Statements
from stepline.store.postgres._take_gates import TakeGates
from stepline.store.postgres.presence import Presence
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    AppRemoval,
    CronRow,
    EventIngest,
    EventRecord,
    FunctionSet,
    HistoryRecord,
    InboxItem,
    IngestResult,
    Lease,
    NewRun,
    PassCommit,
    Purged,
    RunEnd,
    SpentRun,
    StepRecord,
    TriggerRow,
    WaitMatcher,
    WaitRecord,
    Wake,
    WorkerRecord,
)

DEDUP_WINDOW = 24 * 3600.0
_HINT_FOR = 1.0  # seconds a found due deferral keeps optimistic transactions reading them
_NO_ATTEMPT = (None, None, None)
_CREATED_AT = itemgetter(8)  # created_at in WAIT_COLUMNS and MATCHER_COLUMNS


class PostgresTx:
    """The write verbs of one transaction (``Store.transaction()``)."""

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
        self._gates = gates  # the gates of the buckets its takes were refused (_take_gates)
        self._triggers = (catalog or TriggerCatalog()).view(
            lambda: int(self._s.run(q.CATALOG_VERSION).fetchall()[0][0]),
            lambda: [TriggerRow(*r) for r in self._s.run(q.CATALOG_ROWS)],
        )
        self._hints = self.hints = hints if hints is not None else Hints()
        self._presence = presence
        self._tokens = tokens if tokens is not None else LeaseTokens()
        # a commit_pass assuming its lease is held (see commit_pass): (run, token, owner), and
        # the lease row read along with its writes
        self._assumed: tuple[str, str, str] | None = None
        self._lease_read: Later | None = None
        self._index = IndexPaths(lambda query, p: self._s.run(query, p).fetchall(), self._s.write)
        self._locked: set[str] = set()  # advisory locks this transaction holds
        # whether a verb may have made work due for some worker (new, woken, rescheduled or
        # released runs, freed concurrency slots, deferrals, schedules, resumed functions): the
        # store then sends NOTIFY before committing (wakeups.py)
        self.made_work = False
        # the (function id, run id) of the runs it created due now, without concurrency keys,
        # and not leased by itself: its NOTIFY names them when they are the only work it made
        # (a worker leases those with one statement: lease_named)
        self.new_runs: dict[str, str] = {}
        # whether the transaction must be on disk before it is acknowledged: not when it only
        # leased runs, renewed leases, looked for due crons and flushed debounces or batches
        # (verbs that pass durable=False). Such a transaction lost in a crash of the server
        # leaves those runs due again, as if it never happened, and any durable commit after
        # it (a step's) writes it to disk first: the WAL is flushed in order
        self.durable = False

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
        if self._s.optimistic:
            return self._s.savepoint()  # a mark (_statements.Marked): its statements
        return self._careful_savepoint()

    @contextmanager
    def _careful_savepoint(self) -> Iterator[Statements]:
        locked = set(self._locked)

        def undo() -> None:
            self._locked = locked
            self._index.forget()

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
        if self._s.optimistic:
            return self._s.savepoint()
        return self._savepoint_none()

    @contextmanager
    def _savepoint_none(self) -> Iterator[None]:
        with self._savepoint(durable=False):  # the verbs inside it say whether they are
            yield

    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        with self._savepoint():
            note_unless_shared(self, items)
            self._read_index_ahead({item.event.name for item in items}, now)
            return ingest(self, items, now, wait_matches)

    def _read_index_ahead(self, names: set[str], now: float) -> None:
        """The wait and cancel-matcher paths of each event name, and whether it has unindexed
        waits and matchers, in one round trip (the shared rules ask one at a time; reading
        them earlier in the transaction sees the same: its own writes, and what others
        committed, which is concurrent with its events either way)."""
        index, hints = self._index, self._hints
        names = {n for n in names if not index.known(q.WAIT_PATHS, n)}
        if self._s.optimistic:
            # names that never had a wait or cancel matcher here: none now (the usual case),
            # or the server fails the transaction, which is made again reading them
            bare = sorted(names - hints.indexed_names)
            if bare:
                self._s.write(q.NO_WAITS_NOR_MATCHERS, {"names": bare, "now": now})
                for name in bare:
                    index.read_ahead(q.WAIT_PATHS, q.WAITS_UNINDEXED, name, ((), ()))
                    index.read_ahead(q.MATCHER_PATHS, q.MATCHERS_UNINDEXED, name, ((), ()))
                names -= set(bare)
        reads: list[tuple[str, tuple[Any, ...]]] = []
        for name in sorted(names):
            reads += [(q.WAIT_PATHS, (name,)), (q.WAITS_UNINDEXED, (name,))]
            reads += [(q.MATCHER_PATHS, (name,)), (q.MATCHERS_UNINDEXED, (name, now))]
        if not reads:
            return
        version = not self._s.optimistic and self._triggers.unread()
        if version:  # the catalog's version too, in the same round trip
            reads.append((q.CATALOG_VERSION, ()))
        found = [cursor.fetchall() for cursor in self._s.run_all(reads)]
        if version:
            self._triggers.checked(int(found.pop()[0][0]))
            reads.pop()
        for i in range(0, len(reads), 2):
            (paths, (name, *_)), (unindexed, _) = reads[i], reads[i + 1]
            index.read_ahead(paths, unindexed, name, (found[i], found[i + 1]))
            if found[i] or found[i + 1]:
                hints.has_index(name)

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

    # -- EventPrimitives (see store/_primitives: each states how it is exact) ---------------------
    def insert_events(self, events: Sequence[EventRecord], now: float) -> list[bool]:
        return [self._insert_event(event, now) for event in events]

    def _insert_event(self, event: EventRecord, now: float) -> bool:
        s = self._s
        new = True
        if event.id is not None:
            fresh = s.run(
                q.REMEMBER_SENDER_ID,
                {"id": event.id, "now": now, "horizon": now - DEDUP_WINDOW},
            ).fetchone()
            new = fresh is not None
        s.write(
            q.INSERT_EVENT,
            (
                event.internal_id,
                event.name,
                event.encoded_data(),
                dumps_exact(event.user) if event.user else b"{}",
                event.id,
                event.ts,
                now,
                not new,
            ),
            "events",
        )
        return new

    def wait_paths(self, event_name: str) -> Sequence[str]:
        return self._index.indexed_paths(q.WAIT_PATHS, event_name)

    def unindexed_waits(self, event_name: str) -> list[WaitRecord]:
        return [
            shapes.wait_record(r) for r in self._index.unindexed_rows(q.WAITS_UNINDEXED, event_name)
        ]

    def indexed_waits(self, event_name: str, path: str, values: Sequence[str]) -> list[WaitRecord]:
        rows = self._s.run(q.WAITS_INDEXED, (event_name, path, list(values)))
        return [shapes.wait_record(r) for r in rows]

    def matcher_paths(self, event_name: str) -> Sequence[str]:
        return self._index.indexed_paths(q.MATCHER_PATHS, event_name)

    def unindexed_matchers(self, event_name: str, now: float) -> list[WaitRecord]:
        rows = self._index.unindexed_rows(q.MATCHERS_UNINDEXED, event_name, now)
        return [shapes.wait_record(r) for r in rows]

    def indexed_matchers(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[WaitRecord]:
        rows = self._s.run(q.MATCHERS_INDEXED, (event_name, path, list(values), now))
        return [shapes.wait_record(r) for r in rows]

    def delete_wait(self, run_id: str, wait_id: str) -> bool:
        # of an event resolving it, its timeout and a cancellation, the one deleting it decides
        return bool(self._s.run(q.DELETE_WAIT, (wait_id,)).rowcount == 1)

    def resume_waits(self, resumed: Sequence[ResumedWait], now: float) -> None:
        s = self._s
        for r in resumed:
            s.write(q.COMPLETE_STEP, (r.event_json, now, r.run_id, r.step_hash), "steps")
            s.write(q.WAKE, (now, r.run_id), "queue")
            data = dumps({"event_id": r.event_id}).decode()
            s.write(
                q.INSERT_STEP_HISTORY, (r.run_id, now, "WAIT_MATCHED", r.run_id, r.step_hash, data)
            )

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
        self.made_work = True  # a cancelled run's slot is free
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
            return assumed[2]
        row = self._s.run(q.LEASE_TOKEN, (run_id,)).fetchone()  # FOR UPDATE: held to commit
        if row is None or row[0] != token:
            return None
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
        self._s.write(q.MARK_RUNNING, (started_at, run_id), "runs")

    def end_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        self.made_work = True  # its concurrency slot is free
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
        matchers costs no read: ``_read_index_ahead``)."""
        if commit.events:
            note_unless_shared(self, commit.events)
            self._read_index_ahead({item.event.name for item in commit.events}, now)
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
            kept = {r[0] for r in s.run(q.HEARTBEAT, (now + ttl, list(run_ids), owner))}
        return [run_id for run_id in run_ids if run_id not in kept]

    def release_owner(self, owner: str, now: float) -> int:
        self.made_work = True
        with self._savepoint() as s:
            return s.run(q.RELEASE_OWNER, (now, now, owner)).rowcount

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        with self._savepoint() as s:
            row = s.run(q.LEASE_TOKEN, (run_id,)).fetchone()
            if row is None or row[0] != lease_token:
                raise LeaseLostError(f"run {run_id}: lease lost")
            worker = row[1]
            # the rows this statement deletes are the waits it times out: a wait an event
            # resolved (deleted) first is not among them
            expired = [
                shapes.wait_record(r) for r in s.run(q.DELETE_EXPIRED_WAITS_OF_RUN, (run_id, now))
            ]
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
            return [(r[0], r[1], r[2]) for r in s.run(q.OVERDUE_STARTS, params)]

    def cancel_run(
        self, run_id: str, now: float, reason: str, event_id: str | None = None
    ) -> str | None:
        with self._savepoint():
            return cancel_by(self, run_id, now, reason, event_id)

    # -- admission state (FlowState, DeferralState, AdmissionTx) -----------------------------------
    def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None:
        self._s.write(q.INSERT_SKIP, (event_id, function_id, reason, now), "skips")

    def add_event_effects(self, effects: Sequence[tuple[str, str, str]]) -> None:
        self._s.write_many(q.INSERT_EVENT_EFFECT, effects)

    def create_run(self, new_run: NewRun, now: float, due_at: float | None = None) -> None:
        if (due_at is None or due_at <= now) and not new_run.admission.concurrency:
            self.new_runs[new_run.run_id] = new_run.function_id
        else:
            self.made_work = True  # a run due later (a worker's next due time moved) or keyed
        s = self._s
        s.write(
            q.CREATE_RUN,
            (
                *shapes.run_params(new_run, now),
                *shapes.queue_params(new_run, now, due_at),
                *shapes.queued_history_params(new_run.run_id, now),
            ),
        )
        rows = [(e, new_run.run_id) for e in new_run.event_ids]
        s.write_many(q.INSERT_RUN_EVENT, rows, "run_events")
        for spec in new_run.admission.cancel_on:
            s.write(q.INSERT_MATCHER, shapes.matcher_params(new_run.run_id, spec, now, new_id(now)))
            if spec.index_path is None:
                self._index.added_unindexed(q.MATCHERS_UNINDEXED, spec.event_name)
            else:
                self._index.add_indexed_path(
                    q.INSERT_MATCHER_PATH, q.MATCHER_PATHS, spec.event_name, spec.index_path
                )

    def idempotency_seen(self, key: str, now: float) -> bool:
        self._lock(f"idempotency\x1f{key}")
        row = self._s.run(q.IDEMPOTENCY_SEEN, (key,)).fetchone()
        return row is not None and row[0] > now - IDEMPOTENCY_WINDOW

    def remember_idempotency(self, key: str, now: float) -> None:
        self._lock(f"idempotency\x1f{key}")
        self._s.write(q.REMEMBER_IDEMPOTENCY, (key, now))

    def gcra_tat(self, bucket: str) -> float | None:
        self._lock(f"gcra\x1f{bucket}")
        row = self._s.run(q.GCRA_TAT, (bucket,)).fetchone()
        return None if row is None else float(row[0])

    def set_gcra_tat(self, bucket: str, tat: float) -> None:
        self._lock(f"gcra\x1f{bucket}")
        self._s.write(q.SET_GCRA_TAT, (bucket, tat))

    def active_singleton_runs(self, key: str) -> list[str]:
        self._lock(f"singleton\x1f{key}")
        return [r[0] for r in self._s.run(q.ACTIVE_SINGLETON_RUNS, (key,))]

    def get_deferral(self, kind: str, function_id: str, key: str) -> DeferralRow | None:
        self._lock(f"deferral\x1f{kind}\x1f{function_id}\x1f{key}")
        row = self._s.run(q.GET_DEFERRAL, (kind, function_id, key)).fetchone()
        return None if row is None else _rows.deferral(row)

    def put_deferral(self, row: DeferralRow) -> None:
        self.made_work = True
        self._s.write(
            q.PUT_DEFERRAL,
            (
                row.kind,
                row.function_id,
                row.key,
                dumps(row.event_ids).decode(),
                row.first_at,
                row.due_at,
                dumps(new_run_to_dict(row.run)).decode(),
            ),
        )

    def delete_deferral(self, row: DeferralRow) -> None:
        self._s.write(q.DELETE_DEFERRAL, (row.kind, row.function_id, row.key))

    def flush_deferrals(self, now: float) -> list[IngestResult]:
        hints = self._hints
        if self._s.optimistic and now - hints.deferrals_due_at > _HINT_FOR:
            # none due (the usual case), or the server fails the transaction
            self._s.write(q.NONE_DUE_DEFERRALS, (now,))
            return []
        with self._savepoint(durable=False) as s:
            due: list[DeferralRow] = []
            found_due = s.run(q.DUE_DEFERRALS, (now,)).fetchall()
            if found_due:  # the next optimistic transactions read them too, for a while
                hints.deferrals_due_at = now
            for found in found_due:
                row = _rows.deferral(found)
                name = f"deferral\x1f{row.kind}\x1f{row.function_id}\x1f{row.key}"
                # another transaction deciding on this debounce or batch (an event joining it,
                # another worker flushing it): leave it to that one, it is still due after
                if name not in self._locked:
                    got = s.run(q.TRY_LOCK_KEY, (name,)).fetchone()
                    if not (got and got[0]):
                        continue
                    self._locked.add(name)
                again = s.run(q.GET_DEFERRAL, (row.kind, row.function_id, row.key)).fetchone()
                if again is not None and again[5] <= now:  # still there and due, as committed
                    due.append(_rows.deferral(again))
            return flush_due(self, due, now)

    # -- schedules, pauses, workers, replays ------------------------------------------------------
    def sync_crons(self, functions: FunctionSet, schedules: Sequence[CronRow]) -> None:
        self.made_work = True
        with self._savepoint() as s:
            self.adopt_unowned(functions)
            app, ids = functions.app_id, list(functions.function_ids)
            wanted = {(r.function_id, r.cron) for r in schedules}
            for fn, cron in s.run(q.CRONS_OF, (app, ids)).fetchall():
                if (fn, cron) not in wanted:
                    s.write(q.DELETE_CRON, (app, fn, cron))
            for r in schedules:
                s.write(q.INSERT_CRON, (r.function_id, r.cron, r.next_at, app))

    def due_crons(self, now: float, functions: FunctionSet) -> list[CronRow]:
        with self._savepoint(durable=False) as s:
            rows = s.run(q.DUE_CRONS, (now, functions.app_id, list(functions.function_ids)))
            return [CronRow(*r) for r in rows]

    def advance_cron(self, row: CronRow, next_at: float) -> bool:
        with self._savepoint() as s:
            cursor = s.run(
                q.ADVANCE_CRON, (next_at, row.app_id, row.function_id, row.cron, row.next_at)
            )
            return cursor.rowcount == 1

    def adopt_unowned(self, functions: FunctionSet) -> int:
        with self._savepoint() as s:
            app, ids = functions.app_id, list(functions.function_ids)
            s.write(q.ADOPT_QUEUE, (app, ids))
            adopted = s.run(q.ADOPT_RUNS, (app, ids)).rowcount
            s.write(q.ADOPT_CRONS, {"app": app, "fns": ids})
            s.write(q.DROP_UNOWNED_CRONS, (ids,))
            s.write(q.ADOPT_PAUSES, {"app": app, "fns": ids})
            s.write(q.DROP_UNOWNED_PAUSES, (ids,))
            return adopted

    def register_worker(self, worker: WorkerRecord) -> None:
        with self._savepoint() as s:
            s.write(q.DELETE_WORKER_FUNCTIONS, (worker.worker_id,))
            s.write(
                q.REGISTER_WORKER,
                (
                    worker.worker_id,
                    worker.app_id,
                    dumps(list(worker.function_ids)).decode(),
                    worker.started_at,
                    worker.seen_at,
                    worker.expires_at,
                ),
            )
            rows = [(f, worker.app_id, worker.worker_id) for f in worker.function_ids]
            s.write_many(q.INSERT_WORKER_FUNCTION, rows)

    def touch_worker(self, worker_id: str, now: float, expires_at: float) -> None:
        with self._savepoint(durable=False) as s:
            s.write(q.TOUCH_WORKER, (now, expires_at, worker_id))

    def unregister_worker(self, worker_id: str) -> None:
        with self._savepoint() as s:
            s.write(q.DELETE_WORKER_FUNCTIONS, (worker_id,))
            s.write(q.DELETE_WORKER, (worker_id,))

    def purge_expired(self, now: float, limit: int = 10_000) -> int:
        with self._savepoint() as s:
            horizon = now - IDEMPOTENCY_WINDOW
            count = s.run(q.PURGE_SENDER_IDS, (horizon, limit)).rowcount
            count += s.run(q.PURGE_IDEMPOTENCY, (horizon, limit)).rowcount
            s.write(q.PURGE_WORKERS, (horizon,))
            count += s.run(q.PURGE_WORKER_ROWS, (horizon,)).rowcount
            return count + s.run(q.PURGE_GCRA, (now, limit)).rowcount

    def purge_before(self, cutoff: float, limit: int) -> Purged:
        with self._savepoint() as s:
            run_ids = [r[0] for r in s.run(q.ENDED_BEFORE, (cutoff, limit))]
            if run_ids:
                for statement in (
                    q.DELETE_STEPS_OF_RUNS,
                    q.DELETE_HISTORY_OF_RUNS,
                    q.DELETE_RUN_EVENTS_OF_RUNS,
                    q.DELETE_RUNS,
                ):
                    s.write(statement, (run_ids,))
            s.write(q.PURGE_INBOX, (cutoff, limit))
            events = s.run(q.PURGE_EVENTS, (cutoff, limit)).rowcount
            skips = s.run(q.PURGE_SKIPS, (cutoff, limit)).rowcount
            return Purged(len(run_ids), events, skips)

    def put_sdk_app(self, app_id: str, name: str, registration: bytes, now: float) -> None:
        with self._savepoint() as s:
            s.write(q.PUT_SDK_APP, (app_id, name, bytes(registration), now))

    def set_paused(self, function_id: str, paused: bool, app_id: str = "") -> None:
        self.made_work = True
        with self._savepoint() as s:
            if paused:
                s.write(q.PAUSE, (app_id, function_id))
            elif app_id:
                s.write(q.RESUME, (app_id, function_id))
            else:
                s.write(q.RESUME_EVERY_APP, (function_id,))

    def replay_run(
        self, run_id: str, new_run: NewRun, before_position: int | None, now: float
    ) -> bool:
        with self._savepoint() as s:
            if s.run(q.SELECT_RUN, (run_id,)).fetchone() is None:
                return False
            self.create_run(new_run, now)
            if before_position is not None:
                s.write(q.COPY_STEPS, (new_run.run_id, run_id, before_position))
            data = dumps({"of": run_id}).decode()
            s.write(
                q.INSERT_HISTORY,
                (new_run.run_id, now, "RUN_REPLAYED", None, None, None, data, None),
            )
            return True

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

    def spent_runs(self, run_ids: Sequence[str], max_passes: int) -> list[SpentRun]:
        if self._s.optimistic:  # none (the usual case), or the server fails the transaction
            self._s.write(q.NONE_SPENT, (list(run_ids), max_passes))
            return []
        rows = self._s.run(q.PASSES_SPENT, (list(run_ids), max_passes))
        return [SpentRun(*r) for r in rows]

    def fail_run(self, run_id: str, error: dict[str, Any], now: float) -> None:
        self._s.write(q.FAIL_RUN, (dumps(error).decode(), now, run_id), "runs")

    def mark_steps_running(
        self, run_id: str, lease_token: str, steps: Sequence[StepRecord]
    ) -> bool:
        with self._savepoint() as s:
            row = s.run(q.LEASE_TOKEN, (run_id,)).fetchone()
            if row is None or row[0] != lease_token:
                return False
            s.write_many(
                q.MARK_STEP_RUNNING,
                [
                    (run_id, p.hash, p.step_id, p.kind, p.position, p.attempts, p.started_at)
                    for p in steps
                ],
            )
            return True


class _NotHeld(Exception):
    """A commit assumed its lease held, and it was not (commit_pass decides again)."""
