"""The Store seam: the only way the engine reaches storage. Domain verbs, no SQL.

Writes happen inside ``store.transaction()``, which yields a ``StoreTx``. Each verb on a ``StoreTx``
is atomic on its own (a failed verb leaves nothing behind) and the whole transaction is committed
durably when the ``with`` block exits; the engine batches many verbs from many runs into one
transaction (group commit) and acknowledges none before the commit returns.

Reads outside a transaction see committed state. Implementations are safe to call from several
threads (one write transaction at a time per process) and, for SQLite and PostgreSQL, from
several processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from stepline.errors import StoreError

# the loop-commit verbs (PostgreSQL) live in loop_commits.py, named here as before
from stepline.store.loop_commits import LoneStepCommits as LoneStepCommits
from stepline.store.loop_commits import LoopCommits as LoopCommits
from stepline.store.loop_commits import WouldBlock as WouldBlock
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    AppRecord,
    AppRemoval,
    CronRow,
    EventFilter,
    EventIngest,
    EventRecord,
    EventRunRecord,
    FunctionSet,
    HistoryRecord,
    InboxItem,
    IngestResult,
    Lease,
    NewRun,
    PassCommit,
    Purged,
    QueueState,
    RunFilter,
    RunRecord,
    RunState,
    SkipRecord,
    SpentRun,
    StepRecord,
    StoredEvent,
    StoreStats,
    TriggerRow,
    WaitMatcher,
    WorkerRecord,
)
from stepline.store.search_records import RunClause, SearchWindow


class StoreTx(Protocol):
    """The write verbs, available inside ``Store.transaction()``."""

    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        """Store events; for each one not seen before (by sender id, 24 h) create its runs and
        resolve the waits it satisfies (memo written, wait removed, run made due)."""
        ...

    def commit_pass(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult] | None:
        """Apply one pass's commit; returns what ingesting its events did. Raises
        ``LeaseLostError`` (and applies nothing) when the run's lease token is not
        ``commit.lease_token`` any more. If the run was cancelled meanwhile, only the settled
        step results and history of the commit are kept (a step that was executing finishes and
        keeps its result) and None is returned: the pass must stop."""
        ...

    def stored_event_ids(self, internal_ids: Sequence[str]) -> set[str]:
        """Which of these events (by Stepline id) are stored, as this transaction sees them."""
        ...

    def run_events(self, run_id: str) -> list[EventRecord]:
        """The events that triggered a run (in order), as this transaction sees them."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Make a group of verbs all-or-nothing inside the transaction."""
        ...

    def purge_expired(self, now: float, limit: int = 10_000) -> int:
        """Delete flow-control state that can no longer matter, up to ``limit`` rows of each
        kind (a small batch: call again while it returns ``limit`` or more): sender ids and
        idempotency keys seen more than 24 h ago, GCRA buckets whose arrival time has passed,
        workers not alive for 24 h. Returns the count."""
        ...

    def purge_resolved_waits(self, limit: int) -> int:
        """Delete up to ``limit`` of the waits an ingest resolved whose rows the store kept to
        delete many together (SQLite: deleting each at once rewrote a page of the waits' index
        per wait; such a wait is pending for no read and no claim). Returns the count (call
        again while it is ``limit``); 0 for a store that deletes a wait as it resolves it."""
        ...

    def purge_before(self, cutoff: float, limit: int) -> Purged:
        """Delete up to ``limit`` runs that ended before ``cutoff`` with their steps and
        history, then up to ``limit`` of the events no remaining run (or debounce or batch)
        refers to that were received before ``cutoff``, and up to ``limit`` skips recorded
        before it (a small batch: call again while ``Purged.full(limit)``). Rows another
        transaction holds locked are skipped, never waited for."""
        ...

    def flush_deferrals(self, now: float) -> list[IngestResult]:
        """Start the runs of debounces and batches whose time has come: one result per
        debounce or batch (under its last event's id) with the run it started and the runs its
        singleton cancelled (to be announced like an ingested event's)."""
        ...

    def sync_crons(self, functions: FunctionSet, schedules: Sequence[CronRow]) -> None:
        """Make the stored schedules of ``functions`` exactly ``schedules`` (new ones start at
        their ``next_at``; existing ones keep their state; schedules recorded without an app id
        for these function ids become the app's)."""
        ...

    def due_crons(self, now: float, functions: FunctionSet) -> list[CronRow]:
        """Schedules of ``functions`` whose next tick is at or before ``now``."""
        ...

    def advance_cron(self, row: CronRow, next_at: float) -> bool:
        """Move a schedule from ``row.next_at`` to ``next_at``; False if another worker did
        first (the caller then starts no run)."""
        ...

    def put_sdk_app(self, app_id: str, name: str, registration: bytes, now: float) -> None:
        """Record (or replace) the latest sync of Inngest SDK app ``name`` in app ``app_id``:
        its registration body as received (``POST /fn/register``), kept across restarts."""
        ...

    def set_paused(self, function_id: str, paused: bool, app_id: str = "") -> None:
        """Pause (runs are created but not leased) or resume app ``app_id``'s function. With
        ``app_id`` "": pause it in every app (until an app registering the function adopts the
        pause, see ``adopt_unowned``), or resume it in every app. Resuming an app's function
        also lifts a pause of it in every app (not yet adopted)."""
        ...

    def replay_run(
        self, run_id: str, new_run: NewRun, before_position: int | None, now: float
    ) -> bool:
        """Create ``new_run`` (same function and events as ``run_id``, its admission from the
        engine) as a replay of ``run_id``; with ``before_position``, the completed memo rows
        before that position are copied (those steps do not run again). False if ``run_id``
        does not exist."""
        ...

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
        """Lease up to ``limit`` runs of ``functions`` that are due (or whose lease expired)
        until ``now + ttl``, in the fair order (``store/_fair_order.py``: across functions and
        concurrency-key groups by fewest live leases, then oldest; queue order — due time,
        then run id — within a group), skipping paused functions and full concurrency keys.
        ``due_by`` (at least ``now``) leases runs due by then too, ahead of time: their
        ``Lease.due_at`` says when their pass may execute. Runs of other apps and functions
        are never looked at. In the same transaction each leased run becomes RUNNING, names
        ``owner`` as its worker, and on its first pass gets its ``started_at`` and a
        RUN_STARTED history row (unless its start timeout already passed: the pass will cancel
        it).

        Each lease counts a pass begun; a successful ``commit_pass`` of the run sets the count
        back to 0. A due run already leased ``max_passes`` times without one is not leased: it
        is failed here (FAILED with ``reentered_error``, a RUN_FAILED history row, its queue
        item, waits and cancel matchers removed, a parent waiting on it woken with the error),
        so no run is re-entered without bound; it is added to ``failed`` when given (the
        engine announces its end in the same transaction)."""
        ...

    def mark_steps_running(
        self, run_id: str, lease_token: str, steps: Sequence[StepRecord]
    ) -> bool:
        """Record that these step attempts are executing (status RUNNING, ``started_at``,
        ``attempts`` made before). Never over a settled step, nor over a row of more attempts
        (the attempt marked has ended: its RETRYING row must keep its ``due_at``, a mark that
        lands after it is late); nothing (False) when the lease token is not ``lease_token``
        any more."""
        ...

    def register_worker(self, worker: WorkerRecord) -> None:
        """Record (or renew) a worker and the functions it serves."""
        ...

    def sync_triggers(
        self,
        app_id: str,
        rows: Sequence[TriggerRow],
        now: float,
        served: FunctionSet | None = None,
    ) -> None:
        """Make app ``app_id``'s part of the trigger catalog ``rows`` (the event names each of
        its functions starts runs on), as a re-sync does in Inngest. ``served``: a worker's
        registration (registered in this transaction, at ``now``): the rows of the app's other
        functions that a live worker of the app serves (``expires_at`` after ``now``) are kept,
        so an older worker starting mid-rollout does not unhook a newer one's functions; with
        no other live worker, or without ``served`` (an SDK app's sync), ``rows`` replace the
        app's part. Exact under concurrent registrations of one app (PostgreSQL: serialized by
        an advisory lock per app). The waiting inbox rows of functions the change removes are
        dropped and recorded as skipped (reason "unregistered"). From the commit on, an event
        ingested by a sender that did not plan these functions itself is handed to them
        (``EventIngest.sender``)."""
        ...

    def remove_app(self, app_id: str, now: float, force: bool) -> AppRemoval:
        """Take app ``app_id`` out of the trigger catalog and drop the inbox rows waiting for
        it (a decommissioned app: its functions are handed no more events; the rows of its
        catalog's functions are recorded as skipped, reason "unregistered", as when a
        registration removes a function), and the Inngest-SDK apps it stored (``sdk_apps``:
        an app started again under its id restores none). Refused (nothing
        done, ``AppRemoval.refused``) when a worker of the app is alive at ``now``, unless
        ``force``: that worker's app is back in the catalog when a worker of it next starts.
        Exact with a registration of the app at the same time (PostgreSQL: both take the
        app's catalog lock): one that committed first is seen alive here; one that waited for
        the removal re-adds the app after it."""
        ...

    def take_inbox(self, functions: FunctionSet, limit: int) -> Callable[[], list[InboxItem]]:
        """Take (delete) up to ``limit`` of the oldest inbox rows of ``functions`` (their app,
        those function ids), with their events. Exact: of workers taking at once, each row is
        taken by one (``DELETE … RETURNING`` over rows locked ``FOR UPDATE SKIP LOCKED``);
        a transaction that rolls back gives them back. Returns a function giving the rows
        (call it before the transaction ends, then start their runs in it: ``admit_taken``):
        PostgreSQL sends the statement with the transaction's next round trip."""
        ...

    def admit_taken(self, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
        """Start the runs (and deferrals) a worker planned for events taken from its inbox:
        flow control as for a direct send, decided at ``now`` (the events' reception); the
        events are stored already. Raises what it fails with (call it in a savepoint)."""
        ...

    def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None:
        """Record that event ``event_id`` started no run of ``function_id`` (``list_skips``)."""
        ...

    def events_received(
        self, names: Sequence[str], after: tuple[float, str], until: float
    ) -> list[tuple[float, EventRecord]]:
        """The events of these names received after ``after`` (received time, internal id:
        strictly later in that order) and, on memory and SQLite (one writer: an event stored
        before the take was received by its ``now``), at or before ``until``, oldest first,
        with their received times (an index range on (name, received time)), for the cancel
        check of runs just started from taken inbox rows. PostgreSQL reads every one committed
        before its read, whatever its received time (another process's clock may read later
        than ``until``), and orders it with the ingestion of events of those names
        (docs/design.md, "Handing over"): it raises ``TakeContended``
        (call it in a savepoint; give the row back: ``give_back``) while one is in flight, and
        an ingestion during the rest of this transaction notes its event for ``late_cancels``.
        Memory and SQLite: one writer at a time, never raises."""
        ...

    def deliver(self, rows: Sequence[tuple[str, str, str]], now: float) -> None:
        """Add (app id, function id, event id) rows to the inbox, received at ``now``, for the
        workers of those apps to take (on PostgreSQL the commit wakes the database's workers)."""
        ...

    def give_back(self, rows: Sequence[tuple[str, str, str]], received_at: float) -> None:
        """Put (app id, function id, event id) rows a take got back in the inbox, received at
        ``received_at`` as before (``events_received`` refused the take: ``TakeContended``).
        Wakes no worker (on PostgreSQL no notification: it would call every worker of the
        database): the row is due as it was, the refused take's engine wakes its own workers
        to take it again, and other workers of the app look again while work is due that they
        could not lease (``Worker``'s poll). Memory and SQLite never refuse a take
        (``deliver`` there)."""
        ...

    def late_cancels(self, now: float, wait_matches: WaitMatcher) -> list[IngestResult]:
        """Apply the cancel matchers created before each noted event (``events_received``:
        an ingestion that ran beside a take) to it, once no take is in flight for its name,
        as ingesting it would have (cancelled at ``now``, linked to the event); one result a
        noted event, for the caller to announce. Only PostgreSQL notes events (memory and
        SQLite return nothing). PostgreSQL reads the notes only when this process's takes
        may have caused some lately, or every ``LATE_CANCELS_EVERY`` seconds."""
        ...

    def touch_worker(self, worker_id: str, now: float, expires_at: float) -> None:
        """A registered worker is alive until ``expires_at``."""
        ...

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker (it stopped)."""
        ...

    def adopt_unowned(self, functions: FunctionSet) -> int:
        """Give the runs, schedules and pauses of these function ids recorded without an app id
        (by a version before runs carried it) to ``functions.app_id``. Returns the runs
        adopted."""
        ...

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        """Extend ``owner``'s leases; returns the run ids whose lease ``owner`` no longer holds."""
        ...

    def release_owner(self, owner: str, now: float) -> int:
        """Make every run leased by ``owner`` due now (a restarted worker reclaims its runs)."""
        ...

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        """Time out the run's waits whose deadline passed: the wait is removed and its step memo
        becomes COMPLETED with a null result. Returns the step hashes timed out. A stale wait
        (its step no longer PENDING: ``_primitives.EventPrimitives.delete_wait``) is not timed
        out: its step is kept, no WAIT_TIMED_OUT, its hash not returned."""
        ...

    def overdue_starts(
        self, now: float, functions: FunctionSet, limit: int
    ) -> list[tuple[str, str, float]]:
        """Up to ``limit`` queued runs of ``functions`` (paused ones too) not started by their
        start deadline (``created_at + start_timeout < now``: at the deadline itself a run may
        still start), earliest deadline first:
        ``(run_id, function_id, start_timeout)``."""
        ...

    def cancel_run(
        self, run_id: str, now: float, reason: str, event_id: str | None = None
    ) -> str | None:
        """Cancel a run that has not ended: status CANCELLED, its queue item, waits and cancel
        matchers removed; ``event_id``: the event that cancelled it (its ``cancel_on``), linked
        to the run as CANCELLED (``Store.event_runs``). Returns the run's function id, or None
        if the run does not exist or has already ended (nothing written)."""
        ...


class Store(Protocol):
    """A durable home for events, runs, memoized steps, waits, timers and histories."""

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTx]:
        """A write transaction, committed durably on exit (rolled back on an exception)."""
        ...

    def store_error(self, error: Exception) -> StoreError | None:
        """This backend's reading of an error raised by one of its operations (a verb, a read,
        the commit): a ``StoreUnavailable`` when it means the store cannot be used for now but
        may recover by itself (disk full, I/O error, locked past the busy timeout, connection
        lost); a ``StoreError`` naming the database for any other error of the backend itself
        (read-only, corrupt, cannot be opened); None for an error that is not the backend's.
        After either inside a transaction the transaction is lost as a whole (the database may
        have rolled it back already): the engine fails every job of it with that error, never a
        raw driver exception; workers wait out ``StoreUnavailable`` and stop on the rest."""
        ...

    def load_run(self, run_id: str) -> RunState | None:
        """A run with its trigger events, memo and waits."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """One run."""
        ...

    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        """Runs matching the filter, newest first."""
        ...

    def search_window(
        self, query: RunFilter, window: int, clauses: tuple[RunClause, ...] = ()
    ) -> SearchWindow:
        """The newest ``window`` runs ``query`` selects (its ``limit`` ignored) that every
        clause keeps (a payload search's candidates, see ``RunClause``), with the window's
        last run and whether more runs are selected, all read in one snapshot."""
        ...

    def count_runs(self, query: RunFilter) -> int:
        """How many runs the filter selects, counting up to ``query.limit`` (a bound on the
        work: ``min(count, limit)``)."""
        ...

    def get_steps(self, run_id: str) -> list[StepRecord]:
        """A run's memo rows in execution order."""
        ...

    def steps_of(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        """The memo rows of several runs (a page of a runs list) in one read: run id -> its
        rows in execution order (a run without steps is absent)."""
        ...

    def list_events(self, query: EventFilter) -> list[StoredEvent]:
        """Events matching the filter, newest first (by time received)."""
        ...

    def event_runs(self, event_ids: Sequence[str], limit: int = 100) -> list[EventRunRecord]:
        """The runs these events acted on (of every app), each with what the event did to it:
        started, resumed or cancelled (``EventRunRecord``; a run one event both resumed and
        cancelled is there twice). Up to ``limit`` runs per event, newest run first; events in
        no particular order. A duplicate event started nothing but may have resumed or
        cancelled runs; runs flow control skipped are in ``list_skips``. Rows are recorded in
        the transaction that had the effect, and go with their run when it is purged."""
        ...

    def stats(self, now: float) -> StoreStats:
        """Run counts per status and the queue's depth and lag at ``now`` (for metrics)."""
        ...

    def get_history(self, run_id: str) -> list[HistoryRecord]:
        """A run's history in order."""
        ...

    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        """Events by Stepline id, in the order asked."""
        ...

    def list_skips(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        """Runs that flow control did not start, newest first."""
        ...

    def sdk_apps(self, app_id: str) -> list[tuple[str, bytes]]:
        """The Inngest SDK apps synced in app ``app_id``: (name, registration body), by name."""
        ...

    def paused_functions(self, app_id: str | None = None) -> set[str]:
        """The ids of the functions paused in app ``app_id`` (by it, or in every app); None:
        those paused in any app."""
        ...

    def next_due_at(self, functions: FunctionSet | None = None) -> float | None:
        """The earliest time anything becomes due (a run, a lease expiry, a debounce or batch,
        a cron tick) — with ``functions``, anything a worker serving them could act on (also a
        queued run's start deadline, see ``next_start_deadline``, and an inbox row handed to
        them, due at its reception); None if nothing waits."""
        ...

    def next_start_deadline(self, functions: FunctionSet) -> float | None:
        """The earliest start deadline (``created_at + start_timeout``) of a queued run of
        ``functions`` not started yet (paused ones too); None if there is none."""
        ...

    def apps(self, now: float) -> list[AppRecord]:
        """The apps of the trigger catalog and those inbox rows wait for, by id: each with its
        functions' event triggers, its registered workers (alive at ``now``, last seen) and its
        inbox rows not taken yet."""
        ...

    def live_workers(self, now: float) -> list[WorkerRecord]:
        """The registered workers alive at ``now``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def queue_states(self, run_ids: Sequence[str], now: float) -> list[QueueState]:
        """Where these runs stand in the queue at ``now`` (runs that have ended, or do not
        exist, are left out), in the order asked."""
        ...


class Replay(Exception):
    """An optimistic transaction was rolled back (a job raised, a statement or a lease check
    failed): nothing of it was committed, and its jobs are to be made again, each in a
    savepoint of its own (``Store.transaction()``)."""


class Conflict(Replay):
    """The server ended a transaction on a conflict with another one (PostgreSQL: a deadlock,
    a serialization failure): nothing of it was committed, and it may be made again as it was
    (the other transaction went on). ``Store.transaction()`` raises it as well."""
