"""The in-memory Store: the reference implementation of the Store contract (not durable).

Used by tests and by ``stepline.testing`` when speed matters more than a real file.

Stored records are never changed in place: a write puts a new record in its dictionary through
the transaction's undo journal, so a failed verb (or a failed transaction) is undone exactly, as
a SAVEPOINT (or a ROLLBACK) undoes it in SQL. The store and its reads are here; the transaction
and its write verbs in ``memory_tx.py``, the queue in ``memory_queue.py``.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from stepline.errors import StoreError
from stepline.gcra import Bucket
from stepline.serde import loads
from stepline.store._admission_rules import DeferralRow
from stepline.store._clauses import MISSING, keeps, value_at
from stepline.store.memory_app_verbs import MemoryAppReads
from stepline.store.memory_queue import QueueTable, live_lease
from stepline.store.memory_tx import MemoryTx
from stepline.store.records import (
    INTERNAL_PREFIX,
    TERMINAL_STATUSES,
    CronRow,
    EventFilter,
    EventRecord,
    EventRunRecord,
    FunctionSet,
    HistoryRecord,
    QueueState,
    RunFilter,
    RunRecord,
    RunState,
    SkipRecord,
    StepRecord,
    StoredEvent,
    StoreStats,
    TriggerRow,
    WaitRecord,
    WorkerRecord,
)
from stepline.store.search_records import RunClause, SearchWindow


class MemoryStore(MemoryAppReads):
    """A Store kept in dictionaries behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._events: dict[str, EventRecord] = {}
        self._received: dict[str, float] = {}
        self._duplicates: dict[str, bool] = {}  # events whose sender id was seen in 24 h
        self._dedup: dict[str, float] = {}
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._history: dict[str, list[HistoryRecord]] = {}
        self._waits: dict[str, WaitRecord] = {}
        self._queue = QueueTable()  # rows are QueueItem
        self._matchers: dict[str, WaitRecord] = {}
        self._singletons: dict[str, str] = {}
        # runs created with a start timeout -> their start deadline (rows of runs that started
        # or ended are dropped by overdue_starts)
        self._start_deadlines: dict[str, float] = {}
        self._idempotency: dict[str, float] = {}
        self._gcra: dict[str, Bucket] = {}
        self._skips: dict[int, SkipRecord] = {}
        self._deferrals: dict[tuple[str, str, str], DeferralRow] = {}
        self._paused: dict[tuple[str, str], bool] = {}  # (app id or '' for every app, function)
        self._sdk_apps: dict[tuple[str, str], bytes] = {}  # (app id, SDK app name) -> its sync
        self._crons: dict[tuple[str, str, str], CronRow] = {}
        self._workers: dict[str, WorkerRecord] = {}
        self._cancelled_leases: dict[str, str] = {}  # run id -> lease token held at its cancel
        # (event id, run id, effect) rows of ``event_runs``; values unused (a set with undo)
        self._effects: dict[tuple[str, str, str], None] = {}
        # the trigger catalog: app id -> its rows; and (under "by_name") event name -> the
        # (app, function) pairs listening to it, replaced whole by each sync (undo restores it)
        self._triggers: dict[str, tuple[TriggerRow, ...]] = {}
        self._listening: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {"by_name": {}}
        self._inbox: dict[int, tuple[str, str, str]] = {}  # seq -> (app, function, event id)
        self._inbox_seq = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------------
    def migrate(self) -> None:
        return None

    def close(self) -> None:
        return None

    def store_error(self, error: Exception) -> StoreError | None:
        """Memory never fails by itself (a wrapper may raise a ``StoreError`` itself)."""
        return error if isinstance(error, StoreError) else None

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        with self._lock:
            tx = MemoryTx(self)
            try:
                yield tx
            except BaseException:
                tx.undo_to(0)
                raise

    # -- reads ------------------------------------------------------------------------------------
    def load_run(self, run_id: str) -> RunState | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            return RunState(
                run=_copy_run(run),
                events=[self._events[i] for i in run.event_ids if i in self._events],
                steps={h: replace(s) for h, s in self._steps.get(run_id, {}).items()},
                waits=[w for w in self._waits.values() if w.run_id == run_id and self.pending(w)],
            )

    def pending(self, wait: WaitRecord) -> bool:
        """Whether ``wait``'s step is PENDING: its run waits for it. Else the wait is stale
        (the run moved on): no read lists it and no claim resolves it, as on every store
        (SQLite reads only pending waits, schema 28; ``_primitives.delete_wait``)."""
        step = self._steps.get(wait.run_id, {}).get(wait.step_hash)
        return step is not None and step.status == "PENDING"

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else _copy_run(run)

    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        with self._lock:
            return self._select_runs(query, query.limit)

    def search_window(
        self, query: RunFilter, window: int, clauses: tuple[RunClause, ...] = ()
    ) -> SearchWindow:
        with self._lock:
            newest = self._select_runs(query, window + 1)
            candidates = [
                (n, run)
                for n, run in enumerate(newest[:window], start=1)
                if all(keeps(c, self._searched_value(run, c)) for c in clauses)
            ]
            size = min(len(newest), window)
            edge = newest[size - 1] if size else None
            return SearchWindow(candidates, size, edge, len(newest) > window)

    def count_runs(self, query: RunFilter) -> int:
        with self._lock:
            return len(self._select_runs(query, query.limit))

    def _searched_value(self, run: RunRecord, clause: RunClause) -> Any:
        """What ``clause`` reads of ``run`` (``MISSING`` where its path reaches nothing)."""
        if clause.field == "run.status":
            return run.status
        if clause.field == "run.function_id":
            return run.function_id
        if clause.field == "output":
            return value_at(loads(run.output_json), clause.path)
        if clause.field == "error":
            return value_at(run.error, clause.path)
        if clause.field == "queue.due_at":
            item = self._queue.get(run.run_id)
            return MISSING if item is None or item.due_at is None else item.due_at
        event = self._events.get(run.event_ids[0]) if run.event_ids else None
        if event is None:
            return MISSING
        if clause.field == "event.name":
            return event.name
        return value_at(event.data, clause.path)

    def _select_runs(self, query: RunFilter, limit: int | None) -> list[RunRecord]:
        """The runs the filter selects, newest first, up to ``limit``."""
        found: list[RunRecord] = []
        newest_first = sorted(
            self._runs.values(), key=lambda r: (r.created_at, r.run_id), reverse=True
        )
        for run in newest_first:
            if limit is not None and len(found) >= limit:
                break
            if query.function_id is not None and run.function_id != query.function_id:
                continue
            if query.app_id is not None and run.app_id not in (query.app_id, ""):
                continue
            if query.status is not None and run.status != query.status:
                continue
            if query.event_id is not None and query.event_id not in run.event_ids:
                continue
            if query.after is not None and (run.created_at, run.run_id) >= query.after:
                continue
            if query.newer_than is not None and (run.created_at, run.run_id) <= query.newer_than:
                continue
            if query.created_after is not None and run.created_at < query.created_after:
                continue
            if query.created_before is not None and run.created_at > query.created_before:
                continue
            if query.waiting_for_worker_at is not None and (
                run.status in TERMINAL_STATUSES or self._served(run, query.waiting_for_worker_at)
            ):
                continue
            found.append(_copy_run(run))
        return found

    def _served(self, run: RunRecord, now: float) -> bool:
        """Whether a worker alive at ``now`` has registered the run's function."""
        return any(
            w.expires_at > now
            and run.function_id in w.function_ids
            and run.app_id in (w.app_id, "")
            for w in self._workers.values()
        )

    def queue_states(self, run_ids: Sequence[str], now: float) -> list[QueueState]:
        with self._lock:
            wanted = set(run_ids)
            waits: dict[str, list[WaitRecord]] = {}
            for wait in self._waits.values():
                if wait.run_id in wanted and self.pending(wait):
                    waits.setdefault(wait.run_id, []).append(wait)
            held: Counter[str] = Counter(
                key
                for item in self._queue.values()
                if live_lease(item, now)
                for key, _ in item.concurrency
            )
            states = []
            for run_id in run_ids:
                item = self._queue.get(run_id)
                if item is None:
                    continue
                leased = live_lease(item, now)
                full = () if leased else tuple(k for k, n in item.concurrency if held[k] >= n)
                states.append(
                    QueueState(run_id, item.due_at, leased, full, tuple(waits.get(run_id, ())))
                )
            return states

    def get_steps(self, run_id: str) -> list[StepRecord]:
        with self._lock:
            steps = self._steps.get(run_id, {}).values()
            return sorted((replace(s) for s in steps), key=lambda s: s.position)

    def steps_of(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        with self._lock:
            return {
                run_id: sorted((replace(s) for s in steps.values()), key=lambda s: s.position)
                for run_id in run_ids
                if (steps := self._steps.get(run_id))
            }

    def event_runs(self, event_ids: Sequence[str], limit: int = 100) -> list[EventRunRecord]:
        with self._lock:
            wanted = set(event_ids)
            by_event: dict[str, list[tuple[RunRecord, str]]] = {}
            for event_id, run_id, effect in self._effects:
                run = self._runs.get(run_id)
                if event_id in wanted and run is not None:
                    by_event.setdefault(event_id, []).append((run, effect))
            found: list[EventRunRecord] = []
            for event_id in sorted(by_event):
                rows = sorted(by_event[event_id], key=lambda r: r[1])
                rows.sort(key=lambda r: (r[0].created_at, r[0].run_id), reverse=True)
                found += [EventRunRecord(event_id, e, _copy_run(r)) for r, e in rows[:limit]]
            return found

    def list_events(self, query: EventFilter) -> list[StoredEvent]:
        with self._lock:
            keys = sorted(((t, i) for i, t in self._received.items()), reverse=True)
            if query.id_below is not None:  # by id instead
                keys = sorted(keys, key=lambda k: k[1], reverse=True)
            found: list[StoredEvent] = []
            for received_at, internal_id in keys:
                if len(found) >= query.limit:
                    break
                if query.after is not None and (received_at, internal_id) >= query.after:
                    continue
                if query.id_below is not None and internal_id >= query.id_below:
                    continue
                if query.received_after is not None and received_at < query.received_after:
                    continue
                if query.received_before is not None and received_at > query.received_before:
                    continue
                if query.internal_id is not None and internal_id != query.internal_id:
                    continue
                event = self._events.get(internal_id)
                if event is None or (query.name is not None and event.name != query.name):
                    continue
                if not query.include_internal and event.name.startswith(INTERNAL_PREFIX):
                    continue
                duplicate = internal_id in self._duplicates
                found.append(StoredEvent(event, received_at, duplicate))
            return found

    def stats(self, now: float) -> StoreStats:
        with self._lock:
            by_status: dict[str, int] = {}
            for run in self._runs.values():
                by_status[run.status] = by_status.get(run.status, 0) + 1
            due = [
                item.due_at
                for item in self._queue.values()
                if item.lease_owner is None and item.due_at is not None and item.due_at <= now
            ]
            return StoreStats(by_status, len(self._queue), len(due), min(due, default=None))

    def get_history(self, run_id: str) -> list[HistoryRecord]:
        with self._lock:
            return list(self._history.get(run_id, []))

    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        with self._lock:
            return [self._events[i] for i in internal_ids if i in self._events]

    def next_due_at(self, functions: FunctionSet | None = None) -> float | None:
        with self._lock:
            queue = self._queue
            if functions is None:
                keys = [k for k in queue.due if not self._is_paused(*k)]
                leased = [
                    row
                    for row in queue.leased.values()
                    if not self._is_paused(row.app_id, row.function_id)
                ]
            else:
                apps = (functions.app_id, "") if functions.app_id else ("",)
                keys = [
                    (app_id, f)
                    for app_id in apps
                    for f in functions.function_ids
                    if not self._is_paused(functions.app_id, f)
                ]
                leased = [
                    row
                    for row in queue.leased.values()
                    if row.app_id in apps
                    and row.function_id in functions.function_ids
                    and not self._is_paused(functions.app_id, row.function_id)
                ]
            times = [queue.next_due(key) for key in keys]
            times += [row.lease_expires_at for row in leased]
            times += [row.due_at for row in self._deferrals.values()]
            times += [
                row.next_at
                for row in self._crons.values()
                if functions is None
                or (row.app_id == functions.app_id and row.function_id in functions.function_ids)
            ]
            if functions is not None:
                times.append(self.next_start_deadline(functions))
                times += [  # rows handed to its functions: due at their reception
                    self._received.get(event_id, 0.0)
                    for app_id, function_id, event_id in self._inbox.values()
                    if app_id == functions.app_id and function_id in functions.function_ids
                ]
            return min((t for t in times if t is not None), default=None)

    def next_start_deadline(self, functions: FunctionSet) -> float | None:
        with self._lock:
            runs = self._runs
            return min(
                (
                    deadline
                    for run_id, deadline in self._start_deadlines.items()
                    if (run := runs.get(run_id)) is not None
                    and run.status == "QUEUED"
                    and run.started_at is None
                    and self.serves(functions, run)
                ),
                default=None,
            )

    @staticmethod
    def serves(functions: FunctionSet, run: RunRecord) -> bool:
        """Whether a worker serving ``functions`` may act on ``run`` (runs recorded without an
        app id belong to any app)."""
        return run.function_id in functions.function_ids and run.app_id in ("", functions.app_id)

    def list_skips(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        with self._lock:
            skips = [s for s in self._skips.values() if function_id in (None, s.function_id)]
            return list(reversed(skips))[:limit]

    def paused_functions(self, app_id: str | None = None) -> set[str]:
        with self._lock:
            return {f for app, f in self._paused if app_id is None or app in (app_id, "")}

    def _is_paused(self, app_id: str, function_id: str) -> bool:
        """Whether ``function_id`` is paused in app ``app_id`` (or in every app)."""
        paused = self._paused
        return (app_id, function_id) in paused or ("", function_id) in paused


def _copy_run(run: RunRecord) -> RunRecord:
    """A copy the caller may change without changing the store."""
    return replace(run, event_ids=list(run.event_ids))
