"""The in-memory Store: the reference implementation of the Store contract (not durable).

Used by tests and by ``stepline.testing`` when speed matters more than a real file.

Stored records are never changed in place: a write puts a new record in its dictionary through
the transaction's undo journal, so a failed verb (or a failed transaction) is undone exactly, as
a SAVEPOINT (or a ROLLBACK) undoes it in SQL.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from stepline.errors import LeaseLostError
from stepline.expressions import value_at
from stepline.serde import dumps
from stepline.store.records import (
    TERMINAL_STATUSES,
    EventIngest,
    EventRecord,
    HistoryRecord,
    IngestResult,
    Lease,
    NewRun,
    PassCommit,
    RunFilter,
    RunRecord,
    RunState,
    StepRecord,
    WaitMatcher,
    WaitRecord,
)

DEDUP_WINDOW = 24 * 3600.0
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _QueueItem:
    due_at: float | None
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    wake: bool = False


class MemoryStore:
    """A Store kept in dictionaries behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._events: dict[str, EventRecord] = {}
        self._dedup: dict[str, float] = {}
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._history: dict[str, list[HistoryRecord]] = {}
        self._waits: dict[str, WaitRecord] = {}
        self._queue: dict[str, _QueueItem] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def migrate(self) -> None:
        return None

    def close(self) -> None:
        return None

    @contextmanager
    def transaction(self) -> Iterator[_MemoryTx]:
        with self._lock:
            tx = _MemoryTx(self)
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
                waits=[w for w in self._waits.values() if w.run_id == run_id],
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else _copy_run(run)

    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        with self._lock:
            found: list[RunRecord] = []
            newest_first = sorted(
                self._runs.values(), key=lambda r: (r.created_at, r.run_id), reverse=True
            )
            for run in newest_first:
                if len(found) >= query.limit:
                    break
                if query.function_id is not None and run.function_id != query.function_id:
                    continue
                if query.status is not None and run.status != query.status:
                    continue
                if query.event_id is not None and query.event_id not in run.event_ids:
                    continue
                found.append(_copy_run(run))
            return found

    def get_steps(self, run_id: str) -> list[StepRecord]:
        with self._lock:
            steps = self._steps.get(run_id, {}).values()
            return sorted((replace(s) for s in steps), key=lambda s: s.position)

    def get_history(self, run_id: str) -> list[HistoryRecord]:
        with self._lock:
            return list(self._history.get(run_id, []))

    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        with self._lock:
            return [self._events[i] for i in internal_ids if i in self._events]

    def next_due_at(self) -> float | None:
        with self._lock:
            times = [
                item.lease_expires_at if item.lease_owner is not None else item.due_at
                for item in self._queue.values()
            ]
            return min((t for t in times if t is not None), default=None)


class _MemoryTx:
    """Write verbs over a locked MemoryStore, journaled so each verb is all or nothing."""

    def __init__(self, store: MemoryStore) -> None:
        self._s = store
        self._undo: list[Callable[[], Any]] = []

    # -- the undo journal -------------------------------------------------------------------------
    def undo_to(self, mark: int) -> None:
        """Revert every change made since the journal had ``mark`` entries."""
        while len(self._undo) > mark:
            self._undo.pop()()

    @contextmanager
    def _verb(self) -> Iterator[None]:
        mark = len(self._undo)
        try:
            yield
        except BaseException:
            self.undo_to(mark)
            raise

    def _put(self, table: dict[K, V], key: K, value: V) -> None:
        if key in table:
            old = table[key]
            self._undo.append(lambda: table.__setitem__(key, old))
        else:
            self._undo.append(lambda: table.pop(key))
        table[key] = value

    def _pop(self, table: dict[K, V], key: K) -> None:
        if key in table:
            old = table.pop(key)
            self._undo.append(lambda: table.__setitem__(key, old))

    def _memo(self, run_id: str) -> dict[str, StepRecord]:
        memo = self._s._steps.get(run_id)
        if memo is None:
            memo = {}
            self._put(self._s._steps, run_id, memo)
        return memo

    def _log(self, record: HistoryRecord) -> None:
        rows = self._s._history.get(record.run_id)
        if rows is None:
            rows = []
            self._put(self._s._history, record.run_id, rows)
        rows.append(record)
        self._undo.append(rows.pop)

    # -- events -----------------------------------------------------------------------------------
    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        with self._verb():
            return [self._ingest_one(item, now, wait_matches) for item in items]

    def _ingest_one(self, item: EventIngest, now: float, wait_matches: WaitMatcher) -> IngestResult:
        s = self._s
        event = item.event
        self._put(s._events, event.internal_id, event)
        if event.id is not None:
            seen = s._dedup.get(event.id)
            if seen is not None and seen > now - DEDUP_WINDOW:
                return IngestResult(event.internal_id, True, (), ())
            self._put(s._dedup, event.id, now)
        for new_run in item.new_runs:
            self._create_run(new_run, now)
        resumed = self._resolve_waits(event, now, wait_matches)
        return IngestResult(
            event.internal_id, False, tuple(r.run_id for r in item.new_runs), tuple(resumed)
        )

    def _create_run(self, new_run: NewRun, now: float) -> None:
        run = RunRecord(
            run_id=new_run.run_id,
            function_id=new_run.function_id,
            status="QUEUED",
            event_ids=list(new_run.event_ids),
            created_at=now,
            parent_run_id=new_run.parent_run_id,
            parent_step_hash=new_run.parent_step_hash,
        )
        self._put(self._s._runs, new_run.run_id, run)
        self._put(self._s._queue, new_run.run_id, _QueueItem(due_at=now))
        self._log(HistoryRecord(new_run.run_id, now, "RUN_QUEUED"))

    def _resolve_waits(
        self, event: EventRecord, now: float, wait_matches: WaitMatcher
    ) -> list[str]:
        s = self._s
        payload = event.payload()
        candidates = [
            w
            for w in s._waits.values()
            if w.event_name == event.name
            and (w.index_path is None or value_at(payload, w.index_path) == w.index_value)
        ]
        candidates.sort(key=lambda w: w.created_at)
        resumed: list[str] = []
        for wait in candidates:
            if not wait_matches(wait, event):
                continue
            self._pop(s._waits, wait.wait_id)
            memo = self._memo(wait.run_id)
            step = memo.get(wait.step_hash)
            if step is not None:
                completed = replace(
                    step, status="COMPLETED", output_json=_event_json(event), ended_at=now
                )
                self._put(memo, wait.step_hash, completed)
            self._wake(wait.run_id, now)
            self._log(
                HistoryRecord(
                    wait.run_id,
                    now,
                    "WAIT_MATCHED",
                    step.step_id if step else None,
                    data={"event_id": event.internal_id},
                )
            )
            resumed.append(wait.run_id)
        return resumed

    def _wake(self, run_id: str, now: float) -> None:
        item = self._s._queue.get(run_id)
        if item is None:
            return
        due_at = now if item.lease_owner is None else item.due_at
        self._put(self._s._queue, run_id, replace(item, wake=True, due_at=due_at))

    def _drop_waits_of(self, run_id: str) -> None:
        for wait_id in [w.wait_id for w in self._s._waits.values() if w.run_id == run_id]:
            self._pop(self._s._waits, wait_id)

    # -- passes -----------------------------------------------------------------------------------
    def commit_pass(self, commit: PassCommit, now: float, wait_matches: WaitMatcher) -> None:
        with self._verb():
            self._commit_pass(commit, now, wait_matches)

    def _commit_pass(self, commit: PassCommit, now: float, wait_matches: WaitMatcher) -> None:
        s = self._s
        item = s._queue.get(commit.run_id)
        if item is None or item.lease_token != commit.lease_token:
            raise LeaseLostError(f"run {commit.run_id}: lease lost")
        memo = self._memo(commit.run_id)
        for step in commit.steps:
            self._put(memo, step.hash, replace(step))
        for record in commit.history:
            self._log(record)
        for wait in commit.waits:
            self._put(s._waits, wait.wait_id, wait)
        for new_run in commit.child_runs:
            self._create_run(new_run, now)
        for ingest in commit.events:
            self._ingest_one(ingest, now, wait_matches)
        for wake in commit.wakes:
            parent = s._runs.get(wake.run_id)
            if parent is None or parent.status in TERMINAL_STATUSES:
                continue
            parent_memo = self._memo(wake.run_id)
            pending = parent_memo.get(wake.step_hash)
            if pending is None or pending.status != "PENDING":
                continue
            settled = replace(
                pending,
                status=wake.status,
                output_json=wake.output_json,
                error=wake.error,
                ended_at=now,
                attempts=1,
            )
            self._put(parent_memo, wake.step_hash, settled)
            self._wake(wake.run_id, now)
        run = s._runs[commit.run_id]
        item = s._queue[commit.run_id]  # a wake above may have flagged this very run
        started_at = run.started_at
        if started_at is None:
            started_at = commit.started_at if commit.started_at is not None else now
        end = commit.end
        if end is None:
            self._put(s._runs, run.run_id, replace(run, status="RUNNING", started_at=started_at))
            return
        attempt = run.attempt if end.attempt is None else end.attempt
        if end.status in TERMINAL_STATUSES:
            ended = replace(
                run,
                status=end.status,
                started_at=started_at,
                attempt=attempt,
                output_json=end.output_json,
                error=end.error,
                ended_at=now,
            )
            self._put(s._runs, run.run_id, ended)
            self._pop(s._queue, commit.run_id)
            self._drop_waits_of(commit.run_id)
            return
        suspended = replace(run, status=end.status, started_at=started_at, attempt=attempt)
        self._put(s._runs, run.run_id, suspended)
        self._put(s._queue, commit.run_id, _QueueItem(now if item.wake else end.due_at))

    def lease_due(self, owner: str, now: float, limit: int, ttl: float) -> list[Lease]:
        s = self._s
        due: list[tuple[float, str]] = []
        for run_id, item in s._queue.items():
            since = item.due_at if item.lease_owner is None else item.lease_expires_at
            if since is not None and since <= now:
                due.append((since, run_id))
        due.sort()
        token = secrets.token_hex(8)
        with self._verb():
            for _, run_id in due[:limit]:
                taken = _QueueItem(s._queue[run_id].due_at, owner, token, now + ttl)
                self._put(s._queue, run_id, taken)
        return [Lease(run_id, token) for _, run_id in due[:limit]]

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        lost: list[str] = []
        with self._verb():
            for run_id in run_ids:
                item = self._s._queue.get(run_id)
                if item is None or item.lease_owner != owner:
                    lost.append(run_id)
                else:
                    self._put(self._s._queue, run_id, replace(item, lease_expires_at=now + ttl))
        return lost

    def release_owner(self, owner: str, now: float) -> int:
        mine = [run_id for run_id, item in self._s._queue.items() if item.lease_owner == owner]
        with self._verb():
            for run_id in mine:
                self._put(self._s._queue, run_id, _QueueItem(due_at=now))
        return len(mine)

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        s = self._s
        item = s._queue.get(run_id)
        if item is None or item.lease_token != lease_token:
            raise LeaseLostError(f"run {run_id}: lease lost")
        expired = [
            w
            for w in s._waits.values()
            if w.run_id == run_id and w.expires_at is not None and w.expires_at <= now
        ]
        with self._verb():
            memo = self._memo(run_id)
            for wait in expired:
                self._pop(s._waits, wait.wait_id)
                step = memo.get(wait.step_hash)
                if step is not None:
                    timed_out = replace(step, status="COMPLETED", output_json=b"null", ended_at=now)
                    self._put(memo, wait.step_hash, timed_out)
                self._log(
                    HistoryRecord(run_id, now, "WAIT_TIMED_OUT", step.step_id if step else None)
                )
        return [w.step_hash for w in expired]

    def cancel_run(self, run_id: str, now: float, reason: str) -> bool:
        s = self._s
        run = s._runs.get(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            return False
        with self._verb():
            error = {"name": "Cancelled", "message": reason}
            self._put(s._runs, run_id, replace(run, status="CANCELLED", ended_at=now, error=error))
            self._pop(s._queue, run_id)
            self._drop_waits_of(run_id)
            self._log(HistoryRecord(run_id, now, "RUN_CANCELLED", data={"reason": reason}))
        return True


def _copy_run(run: RunRecord) -> RunRecord:
    """A copy the caller may change without changing the store."""
    return replace(run, event_ids=list(run.event_ids))


def _event_json(event: EventRecord) -> bytes:
    return dumps(event.payload(), "event")
