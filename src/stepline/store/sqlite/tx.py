"""The SQLite store's write verbs inside one BEGIN IMMEDIATE transaction (``_SQLiteTx``), each
in its own SAVEPOINT (or in the enclosing one when it is called first thing in it, see
``_savepoints``): one writer at a time holds the file, so each read-then-write is exact."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stepline.errors import LeaseLostError
from stepline.serde import dumps, dumps_exact
from stepline.store import _rows as shapes
from stepline.store._catalog import CatalogView, TriggerCatalog
from stepline.store._index_paths import IndexPaths
from stepline.store._ingest_rules import admit_taken, cancel_by, ingest, unheard
from stepline.store._marked_runs import MarkedRuns
from stepline.store._pass_rules import PassTx, commit_pass
from stepline.store.records import (
    AppRemoval,
    EventIngest,
    EventRecord,
    FunctionSet,
    HistoryRecord,
    InboxItem,
    IngestResult,
    PassCommit,
    RunEnd,
    StepRecord,
    TriggerRow,
    WaitMatcher,
    Wake,
)
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._announcements import CancelledRunEvents, insert_unheard
from stepline.store.sqlite._cancels import SQLiteCancels
from stepline.store.sqlite._deferred import ClaimLost, Deferred
from stepline.store.sqlite._derived import received
from stepline.store.sqlite._event_rows import select_events
from stepline.store.sqlite._multirow import (
    blob,
    insert_rows,
    insert_shared,
    insert_sharing,
    update_among,
)
from stepline.store.sqlite._savepoints import Optimistic, Savepoint
from stepline.store.sqlite._waits import SQLiteWaitVerbs, WaitSweep
from stepline.store.sqlite.control_verbs import SQLiteControlVerbs

DEDUP_WINDOW = 24 * 3600.0


class _SQLiteTx(SQLiteCancels, SQLiteControlVerbs, SQLiteWaitVerbs):
    """Write verbs inside one BEGIN IMMEDIATE transaction; each verb in its own SAVEPOINT."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        group_cursors: dict[tuple[str, str], str],
        catalog: TriggerCatalog | None = None,
        optimistic: Optimistic | None = None,
        marks: MarkedRuns | None = None,
        wait_sweep: WaitSweep | None = None,
    ) -> None:
        self._c = conn
        # an optimistic transaction's savepoints (none is made: see _savepoints), or None
        self._optimistic = optimistic
        # the runs committed commits marked RUNNING (MarkedRuns); the lease token of each run whose
        # lease a pass commit held (hold_lease), and the runs this optimistic transaction
        # marked: the store remembers them once it committed
        self._marks = marks
        self._held: dict[str, str] = {}
        self.marked: list[tuple[str, str]] = []  # (token, run_id)
        self._group_cursors = group_cursors
        self._catalog = catalog
        self._wait_sweep = WaitSweep() if wait_sweep is None else wait_sweep
        # the trigger events of the runs this transaction cancelled (see run_events)
        self._cancelled = CancelledRunEvents()
        # runs this transaction cancelled while QUEUED: never leased, so no pass ever gave them
        # a wait or a RUNNING step mark (only a commit or a lease does), see drop_run_work
        self._never_leased: set[str] = set()
        # inside ``ingest``: its writes made together (see ``ingest``)
        self._deferred: Deferred | None = None
        # per open SAVEPOINT (innermost last): the connection's changed rows when it began
        self._opened: list[int] = []

    # made at their first use: most transactions (a step's commit) use neither
    @cached_property
    def _triggers(self) -> CatalogView:
        conn = self._c
        return (self._catalog or TriggerCatalog()).view(
            lambda: int(conn.execute(q.CATALOG_VERSION).fetchall()[0][0]),
            lambda: [TriggerRow(*r) for r in conn.execute(q.CATALOG_ROWS)],
        )

    @cached_property
    def _index(self) -> IndexPaths:
        conn = self._c
        return IndexPaths(lambda query, p: conn.execute(query, p).fetchall(), conn.execute)

    def _savepoint(self) -> Savepoint | Optimistic:
        optimistic = self._optimistic
        if optimistic is not None:
            return optimistic
        return Savepoint(self._c, self._opened, self._forget_reads)

    def _forget_reads(self) -> None:
        """After a rollback to a savepoint: what this transaction remembers of the index and the
        catalog may have been read inside it (a wait it resolved, a trigger it removed), so both
        are read again when next asked; and a run it cancelled while QUEUED inside it is QUEUED
        again (it may be leased and given waits before it is cancelled again): no run is taken
        for never leased any more (the runs cancelled before the savepoint have ended, and an
        ended run is not cancelled again)."""
        self._never_leased.clear()
        made = self.__dict__  # the cached properties made so far
        if "_index" in made:
            self._index.forget()
        if "_triggers" in made:
            self._triggers.forget()

    # -- events -----------------------------------------------------------------------------------
    def stored_event_ids(self, internal_ids: Sequence[str]) -> set[str]:
        rows = self._c.execute(q.STORED_EVENT_IDS, (dumps(list(internal_ids)),))
        return {r[0] for r in rows}

    # -- UnheardEvents (and encoded_run_events: _cancels.py) -------------------------------------
    def store_unheard(
        self, events: Sequence[tuple[str, str, bytes]], now: float, sender: FunctionSet | None
    ) -> bool:
        with self._savepoint() as c:
            if not unheard(self, [name for _, name, _ in events], sender, now):
                return False
            insert_unheard(c, events, now)
            return True

    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        with self._savepoint():
            try:  # the writes of many events made together (``Deferred``), in a savepoint
                self._deferred = Deferred()
                with self._savepoint():
                    results = ingest(self, items, now, wait_matches)
                    self._write_deferred()
                    return results
            except ClaimLost:  # cannot happen (see delete_wait); if it did: each one decides
                pass
            finally:
                self._deferred = None
            return ingest(self, items, now, wait_matches)

    def _write_deferred(self) -> None:
        deferred, c = self._deferred, self._c
        if deferred is None:
            return
        # the runs' updates before their queue items go: CANCEL_RUN reads the lease token there
        for params, run_ids in deferred.cancels.items():
            update_among(c, q.CANCEL_RUN, q.CANCEL_RUN_AMONG, params, run_ids)
        for params, run_ids in deferred.cancels_queued.items():
            update_among(c, q.CANCEL_QUEUED_RUN, q.CANCEL_QUEUED_RUN_AMONG, params, run_ids)
        deferred.cancels.clear()
        deferred.cancels_queued.clear()
        if deferred.runs:
            update_among(c, q.DELETE_QUEUE, q.DELETE_QUEUE_AMONG, (), deferred.runs)
            update_among(c, q.DELETE_MATCHERS_OF_RUN, q.DELETE_MATCHERS_OF_RUNS, (), deferred.runs)
            deferred.runs.clear()
        if deferred.leased:
            update_among(c, q.DELETE_WAITS_OF_RUN, q.DELETE_WAITS_OF_RUNS, (), deferred.leased)
            among = q.DELETE_EXECUTING_STEPS_AMONG
            update_among(c, q.DELETE_EXECUTING_STEPS, among, (), deferred.leased)
            deferred.leased.clear()
        if deferred.history:
            rows = deferred.history
            _, ts, kind, data = rows[0] if len(rows[0]) == 4 else (None, None, None, None)
            # RUN_CANCELLED's of a verb: the same objects (the same time, kind and encoded data;
            # identical, so binding the first row's is binding each row's)
            if all(len(r) == 4 and r[1] is ts and r[2] is kind and r[3] is data for r in rows):
                insert_sharing(c, q.INSERT_RUN_HISTORY, [r[0] for r in rows], (ts, kind, data))
            elif all(len(row) == 4 for row in rows):  # a run's own rows
                insert_rows(c, q.INSERT_RUN_HISTORY, rows)
            else:
                insert_rows(c, q.INSERT_HISTORY, [_history_row(row) for row in rows])
            deferred.history.clear()

    # -- the trigger catalog and the inbox (one writer at a time: exact) --------------------------
    def sync_triggers(
        self,
        app_id: str,
        rows: Sequence[TriggerRow],
        now: float,
        served: FunctionSet | None = None,
    ) -> None:
        with self._savepoint() as c:
            self._triggers.replace(
                app_id, rows, now, served, q, c.execute, c.execute, c.executemany
            )

    def remove_app(self, app_id: str, now: float, force: bool) -> AppRemoval:
        with self._savepoint() as c:  # one writer at a time: exact
            [live] = c.execute(q.LIVE_WORKERS_OF_APP, (app_id, now)).fetchone()
            if live and not force:
                return AppRemoval(app_id, live, True, 0, 0)
            # the rows of its catalog's functions are skipped (as a registration removing them)
            triggers, skipped = self._triggers.replace(
                app_id, (), now, None, q, c.execute, c.execute, c.executemany
            )
            dropped = skipped + c.execute(q.DROP_INBOX_OF_APP, (app_id,)).rowcount
            sdk = c.execute(q.DROP_SDK_APPS_OF_APP, (app_id,)).rowcount
        return AppRemoval(app_id, live, False, triggers, dropped, sdk)

    def listeners(self, event_name: str) -> Sequence[tuple[str, str]]:
        return self._triggers.listeners(event_name)

    def deliver(self, rows: Sequence[tuple[str, str, str]], now: float) -> None:
        self._c.executemany(q.DELIVER, [(*row, now) for row in rows])

    give_back = deliver  # a take is never refused here

    def take_inbox(self, functions: FunctionSet, limit: int) -> Callable[[], list[InboxItem]]:
        c = self._c  # one statement writes: atomic without a savepoint (a lease job's cost)
        wanted = dumps(list(functions.function_ids))
        rows = sorted(c.execute(q.TAKE_INBOX, (functions.app_id, wanted, limit)).fetchall())
        events = {e.internal_id: e for e in select_events(c, [r[2] for r in rows])}
        taken = [
            InboxItem(seq, function_id, events.get(event_id), received_at)
            for seq, function_id, event_id, received_at in rows
        ]
        return lambda: taken

    def events_received(
        self, names: Sequence[str], after: tuple[float, str], until: float
    ) -> list[tuple[float, EventRecord]]:
        found: list[tuple[float, EventRecord]] = []
        for name in dict.fromkeys(names):
            params = (name, after[0], until, after[0], after[1])
            rows = self._c.execute(q.EVENTS_RECEIVED, params).fetchall()
            found += [(row[0], shapes.event_record(row[1:])) for row in rows]
            kept = received(self._c, name, after, until)  # announcements kept as a row
            found += [(at, shapes.event_record(row)) for at, row in kept]
        return sorted(found, key=_received_order)

    def late_cancels(self, now: float, wait_matches: WaitMatcher) -> list[IngestResult]:
        return []  # one writer at a time: a take and an ingestion never overlap

    def admit_taken(self, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
        with self._savepoint():
            return admit_taken(self, items, now)

    # -- EventPrimitives (see _primitives; one writer at a time: each is exact) ------------------
    def insert_events(self, events: Sequence[EventRecord], now: float) -> list[bool]:
        c = self._c
        if all(event.id is None and event.v is None for event in events):  # none a duplicate
            name = events[0].name if events else ""
            if all(event.name == name and not event.user for event in events):  # the usual
                insert_shared(c, q.INSERT_UNSENT_EVENTS_OF_NAME, _own_rows(events), (name, now))
            else:
                insert_rows(c, q.INSERT_UNSENT_EVENT, _event_rows(events, now, None))
            return [True] * len(events)
        new: list[bool] = []
        for event in events:
            fresh = True
            key = event.dedup_key()
            if key is not None:  # in order: an earlier event of the list counts
                row = c.execute(q.SEEN_SENDER_ID, (key,)).fetchone()
                fresh = row is None or row[0] <= now - DEDUP_WINDOW
                if fresh:
                    c.execute(q.REMEMBER_SENDER_ID, (key, now))
            new.append(fresh)
        # together: the B-trees' pages stay hot
        insert_rows(c, q.INSERT_EVENT, _event_rows(events, now, new))
        return new

    # -- RunPrimitives ----------------------------------------------------------------------------
    def append_history(self, records: Sequence[HistoryRecord], worker_id: str | None) -> None:
        deferred = self._deferred
        if deferred is not None:  # inside ``ingest``: a cancelled run's, written at its end
            encode = deferred.json_of
            for h in records:
                own = worker_id is None and h.step_id is None and h.data is not None
                if own and h.attempt is None and h.duration is None:  # no NULL to bind
                    deferred.history.append((h.run_id, h.ts, h.kind, encode(h.data)))
                else:
                    deferred.history.append(shapes.history_params(h, worker_id, encode))
            return
        if len(records) == 1:
            h = records[0]
            if h.data is None:  # a step's attempt: its NULL written by the statement
                row = (h.run_id, h.ts, h.kind, h.step_id, h.attempt, h.duration, worker_id)
                self._c.execute(q.INSERT_HISTORY_NO_DATA, row)
            else:
                self._c.execute(q.INSERT_HISTORY, shapes.history_params(h, worker_id))
        elif records:
            params = [shapes.history_params(h, worker_id) for h in records]
            self._c.executemany(q.INSERT_HISTORY, params)

    def settle_pending_step(self, wake: Wake, now: float) -> bool:
        if self._ended_here(wake.run_id):
            return False
        settle = (
            wake.status,
            wake.output_json,
            shapes.json_or_none(wake.error),
            now,
            wake.run_id,
            wake.step_hash,
        )
        return bool(self._c.execute(q.SETTLE_PENDING_STEP, settle).rowcount == 1)

    def wake_run(self, run_id: str, now: float) -> None:
        self._c.execute(q.WAKE, (now, run_id))

    def _ended_here(self, run_id: str) -> bool:
        """Whether ``ingest`` cancelled the run and its UPDATE is still to be made."""
        deferred = self._deferred
        return (
            deferred is not None
            and run_id in deferred.unfinished
            and (deferred.unfinished[run_id] is None)
        )

    # -- passes -----------------------------------------------------------------------------------
    def commit_pass(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult] | None:
        with self._savepoint():
            return commit_pass(self, commit, now, wait_matches)

    def _check_lease(self, run_id: str, token: str) -> str:
        """The worker holding the run's lease, if ``token`` is its lease."""
        worker = self.hold_lease(run_id, token)
        if worker is None:
            raise LeaseLostError(f"run {run_id}: lease lost")
        return worker

    # -- PassPrimitives ---------------------------------------------------------------------------
    def hold_lease(self, run_id: str, token: str) -> str | None:
        row = self._c.execute(q.LEASE_TOKEN, (run_id,)).fetchone()
        if row is None or row[0] != token:
            return None
        self._held[run_id] = token
        return str(row[1])

    def cancelled_lease(self, run_id: str) -> tuple[str, str | None] | None:
        row = self._c.execute(q.CANCELLED_LEASE, (run_id,)).fetchone()
        return None if row is None or row[0] is None else (str(row[0]), row[1])

    def put_steps(self, steps: Sequence[StepRecord]) -> None:
        if len(steps) != 1:
            self._c.executemany(q.UPSERT_STEP, [shapes.step_params(s) for s in steps])
            return
        s = steps[0]  # a pass of one step at a time: its output bound as a BLOB (blob)
        output = s.output_json
        if output is None or s.error is not None or s.due_at is not None:
            self._c.execute(q.UPSERT_STEP, shapes.step_params(s))
            return
        row = (s.run_id, s.hash, s.step_id, s.kind, s.position, s.status, blob(output))
        self._c.execute(q.UPSERT_STEP_DONE, (*row, s.attempts, s.started_at, s.ended_at))

    def put_steps_if_unsettled(self, steps: Sequence[StepRecord]) -> None:
        self._c.executemany(q.INSERT_STEP_IF_UNSETTLED, [shapes.step_params(s) for s in steps])

    def mark_running(self, run_id: str, started_at: float) -> None:
        token, marks = self._held.get(run_id), self._marks
        if token is not None and marks is not None and marks.marked(token, run_id):
            return  # a committed commit of the lease held marked it: the update changes nothing
        self._c.execute(q.MARK_RUNNING, (started_at, run_id))
        if token is not None and self._optimistic is not None:  # all or nothing
            self.marked.append((token, run_id))

    def end_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        self._c.execute(
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
        )

    def suspend_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        c = self._c
        c.execute(q.END_RUN_SUSPENDED, (end.status, end.attempt, started_at, run_id))
        c.execute(q.RESCHEDULE, (now, end.due_at, run_id))

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        lost: list[str] = []
        with self._savepoint() as c:
            for run_id in run_ids:
                if c.execute(q.HEARTBEAT, (now + ttl, run_id, owner)).rowcount != 1:
                    lost.append(run_id)
        return lost

    def release_owner(self, owner: str, now: float) -> int:
        with self._savepoint() as c:
            return c.execute(q.RELEASE_OWNER, (now, now, owner)).rowcount

    def overdue_starts(
        self, now: float, functions: FunctionSet, limit: int
    ) -> list[tuple[str, str, float]]:
        ids = dumps(list(functions.function_ids)).decode()
        rows = self._c.execute(q.OVERDUE_STARTS, (functions.app_id, ids, now, limit))
        return [(r[0], r[1], r[2]) for r in rows]

    def cancel_run(
        self, run_id: str, now: float, reason: str, event_id: str | None = None
    ) -> str | None:
        with self._savepoint():
            return cancel_by(self, run_id, now, reason, event_id)


_EMPTY_OBJECT = bytearray(b"{}")  # bound as is, never changed (sqlite3 copies what it binds)


def _event_rows(
    events: Sequence[EventRecord], now: float, new: list[bool] | None
) -> list[tuple[Any, ...]]:
    """INSERT_EVENT's parameters of each event (``new``: whether each is not a duplicate), or
    INSERT_UNSENT_EVENT's (``new`` None: none has a sender id nor a ``v``, none is a
    duplicate). The BLOBs
    bound as ``bytearray`` (``blob``): an empty ``user`` as one shared object, the data of
    events that share their encoded data (a cancelled run's two announcements) copied once."""
    rows: list[tuple[Any, ...]] = []
    last: bytes | None = None
    data = _EMPTY_OBJECT
    for at, event in enumerate(events):
        encoded = event.encoded_data()
        if encoded is not last:
            last, data = encoded, blob(encoded)
        user = blob(dumps_exact(event.user)) if event.user else _EMPTY_OBJECT
        if new is None:
            rows.append((event.internal_id, event.name, data, user, event.ts, now, 0))
        else:
            duplicate = int(not new[at])
            rows.append(
                (
                    event.internal_id,
                    event.name,
                    data,
                    user,
                    event.ts,
                    now,
                    duplicate,
                    event.id,
                    event.v,
                )
            )
    return rows


def _own_rows(events: Sequence[EventRecord]) -> list[tuple[str, bytearray, float]]:
    """INSERT_UNSENT_EVENTS_OF_NAME's own parameters of each event (``insert_shared``): its id,
    its data (a BLOB, copied once for events that share their encoded data, as
    ``_event_rows``) and its time."""
    rows: list[tuple[str, bytearray, float]] = []
    last: bytes | None = None
    data = _EMPTY_OBJECT
    for event in events:
        encoded = event.encoded_data()
        if encoded is not last:
            last, data = encoded, blob(encoded)
        rows.append((event.internal_id, data, event.ts))
    return rows


def _history_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """INSERT_HISTORY's parameters of a row of ``Deferred.history`` (INSERT_RUN_HISTORY's
    four, or already INSERT_HISTORY's)."""
    if len(row) == 4:
        return (*row[:3], None, None, None, row[3], None)
    return row


def _received_order(row: tuple[float, EventRecord]) -> tuple[float, str]:
    return row[0], row[1].internal_id


if TYPE_CHECKING:  # mypy proves the backend supplies every primitive of the shared algorithms

    def _supplies_primitives(tx: _SQLiteTx) -> PassTx:
        return tx
