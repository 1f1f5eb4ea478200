"""The in-memory Store: the reference implementation of the Store contract (not durable).

Used by tests and by ``stepline.testing`` when speed matters more than a real file.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

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


@dataclass(slots=True)
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
        self._run_order: list[str] = []
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
            yield _MemoryTx(self)

    # -- reads ------------------------------------------------------------------------------------
    def load_run(self, run_id: str) -> RunState | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            return RunState(
                run=replace(run),
                events=[self._events[i] for i in run.event_ids if i in self._events],
                steps={h: replace(s) for h, s in self._steps.get(run_id, {}).items()},
                waits=[w for w in self._waits.values() if w.run_id == run_id],
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else replace(run)

    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        with self._lock:
            found: list[RunRecord] = []
            for run_id in reversed(self._run_order):
                run = self._runs[run_id]
                if query.function_id is not None and run.function_id != query.function_id:
                    continue
                if query.status is not None and run.status != query.status:
                    continue
                if query.event_id is not None and query.event_id not in run.event_ids:
                    continue
                found.append(replace(run))
                if len(found) >= query.limit:
                    break
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
    """Write verbs over a locked MemoryStore. Each verb checks before it changes anything."""

    def __init__(self, store: MemoryStore) -> None:
        self._s = store

    # -- events -----------------------------------------------------------------------------------
    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        return [self._ingest_one(item, now, wait_matches) for item in items]

    def _ingest_one(self, item: EventIngest, now: float, wait_matches: WaitMatcher) -> IngestResult:
        s = self._s
        event = item.event
        s._events[event.internal_id] = event
        if event.id is not None:
            seen = s._dedup.get(event.id)
            if seen is not None and seen > now - DEDUP_WINDOW:
                return IngestResult(event.internal_id, True, (), ())
            s._dedup[event.id] = now
        for new_run in item.new_runs:
            self._create_run(new_run, now)
        resumed = self._resolve_waits(event, now, wait_matches)
        return IngestResult(
            event.internal_id, False, tuple(r.run_id for r in item.new_runs), tuple(resumed)
        )

    def _create_run(self, new_run: NewRun, now: float) -> None:
        s = self._s
        s._runs[new_run.run_id] = RunRecord(
            run_id=new_run.run_id,
            function_id=new_run.function_id,
            status="QUEUED",
            event_ids=list(new_run.event_ids),
            created_at=now,
            parent_run_id=new_run.parent_run_id,
            parent_step_hash=new_run.parent_step_hash,
        )
        s._run_order.append(new_run.run_id)
        s._queue[new_run.run_id] = _QueueItem(due_at=now)
        s._history.setdefault(new_run.run_id, []).append(
            HistoryRecord(new_run.run_id, now, "RUN_QUEUED")
        )

    def _resolve_waits(
        self, event: EventRecord, now: float, wait_matches: WaitMatcher
    ) -> list[str]:
        s = self._s
        candidates = [
            w
            for w in s._waits.values()
            if w.event_name == event.name
            and (w.index_path is None or value_at(event.payload(), w.index_path) == w.index_value)
        ]
        candidates.sort(key=lambda w: w.created_at)
        resumed: list[str] = []
        for wait in candidates:
            if not wait_matches(wait, event):
                continue
            del s._waits[wait.wait_id]
            step = s._steps.get(wait.run_id, {}).get(wait.step_hash)
            if step is not None:
                step.status = "COMPLETED"
                step.output_json = _event_json(event)
                step.ended_at = now
            self._wake(wait.run_id, now)
            s._history.setdefault(wait.run_id, []).append(
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
        item.wake = True
        if item.lease_owner is None:
            item.due_at = now

    # -- passes -----------------------------------------------------------------------------------
    def commit_pass(self, commit: PassCommit, now: float, wait_matches: WaitMatcher) -> None:
        s = self._s
        item = s._queue.get(commit.run_id)
        if item is None or item.lease_token != commit.lease_token:
            raise LeaseLostError(f"run {commit.run_id}: lease lost")
        run = s._runs[commit.run_id]
        memo = s._steps.setdefault(commit.run_id, {})
        for step in commit.steps:
            memo[step.hash] = replace(step)
        s._history.setdefault(commit.run_id, []).extend(commit.history)
        for wait in commit.waits:
            s._waits[wait.wait_id] = wait
        for new_run in commit.child_runs:
            self._create_run(new_run, now)
        if commit.events:
            self.ingest(commit.events, now, wait_matches)
        for wake in commit.wakes:
            parent = s._runs.get(wake.run_id)
            if parent is None or parent.status in TERMINAL_STATUSES:
                continue
            pending = s._steps.get(wake.run_id, {}).get(wake.step_hash)
            if pending is None or pending.status != "PENDING":
                continue
            pending.status, pending.output_json = wake.status, wake.output_json
            pending.error, pending.ended_at, pending.attempts = wake.error, now, 1
            self._wake(wake.run_id, now)
        if run.started_at is None:
            run.started_at = commit.started_at if commit.started_at is not None else now
        end = commit.end
        if end is None:
            run.status = "RUNNING"
            return
        run.status = end.status
        if end.attempt is not None:
            run.attempt = end.attempt
        if end.status in TERMINAL_STATUSES:
            run.output_json = end.output_json
            run.error = end.error
            run.ended_at = now
            del s._queue[commit.run_id]
            for wait_id in [w.wait_id for w in s._waits.values() if w.run_id == commit.run_id]:
                del s._waits[wait_id]
        else:
            item.due_at = now if item.wake else end.due_at
            item.lease_owner = item.lease_token = item.lease_expires_at = None
            item.wake = False

    def lease_due(self, owner: str, now: float, limit: int, ttl: float) -> list[Lease]:
        s = self._s
        due = [
            (item.due_at if item.lease_owner is None else item.lease_expires_at, run_id)
            for run_id, item in s._queue.items()
            if (item.lease_owner is None and item.due_at is not None and item.due_at <= now)
            or (
                item.lease_owner is not None
                and item.lease_expires_at is not None
                and item.lease_expires_at <= now
            )
        ]
        due.sort(key=lambda pair: pair[0] or 0.0)
        token = secrets.token_hex(8)
        leases: list[Lease] = []
        for _, run_id in due[:limit]:
            item = s._queue[run_id]
            item.lease_owner, item.lease_token = owner, token
            item.lease_expires_at, item.wake = now + ttl, False
            leases.append(Lease(run_id, token))
        return leases

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        lost: list[str] = []
        for run_id in run_ids:
            item = self._s._queue.get(run_id)
            if item is None or item.lease_owner != owner:
                lost.append(run_id)
            else:
                item.lease_expires_at = now + ttl
        return lost

    def release_owner(self, owner: str, now: float) -> int:
        count = 0
        for item in self._s._queue.values():
            if item.lease_owner == owner:
                item.lease_owner = item.lease_token = item.lease_expires_at = None
                item.due_at, item.wake = now, False
                count += 1
        return count

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
        for wait in expired:
            del s._waits[wait.wait_id]
            step = s._steps.get(run_id, {}).get(wait.step_hash)
            if step is not None:
                step.status, step.output_json, step.ended_at = "COMPLETED", b"null", now
            s._history.setdefault(run_id, []).append(
                HistoryRecord(run_id, now, "WAIT_TIMED_OUT", step.step_id if step else None)
            )
        return [w.step_hash for w in expired]

    def cancel_run(self, run_id: str, now: float, reason: str) -> bool:
        s = self._s
        run = s._runs.get(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            return False
        run.status, run.ended_at = "CANCELLED", now
        run.error = {"name": "Cancelled", "message": reason}
        s._queue.pop(run_id, None)
        for wait_id in [w.wait_id for w in s._waits.values() if w.run_id == run_id]:
            del s._waits[wait_id]
        s._history.setdefault(run_id, []).append(
            HistoryRecord(run_id, now, "RUN_CANCELLED", data={"reason": reason})
        )
        return True


def _event_json(event: EventRecord) -> bytes:
    return dumps(event.payload(), "event")
