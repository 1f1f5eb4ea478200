"""The memory store's transaction: its write verbs and the primitives of the shared rules.

Stored records are never changed in place: a write puts a new record in its dictionary through
the transaction's undo journal (``_put``, ``_pop``), so a failed verb (or a failed transaction)
is undone exactly, as a SAVEPOINT (or a ROLLBACK) undoes it in SQL. The store and its reads are
in ``memory.py``.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from stepline._ids import new_id
from stepline.errors import LeaseLostError
from stepline.serde import dumps_exact, loads
from stepline.store._fair_order import Candidate, fair_pick, group_of
from stepline.store._ingest_rules import admit_taken, cancel_by, ingest, unheard
from stepline.store._pass_rules import PassTx, commit_pass, fail_spent
from stepline.store._primitives import EndedRun, IndexedWait, ResumedWait, indexed_wait
from stepline.store.memory_app_verbs import MemoryAppVerbs
from stepline.store.memory_control_verbs import MemoryControlVerbs
from stepline.store.memory_queue import GROUP_VISITS, QueueItem, candidate_of
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    STARTED,
    TERMINAL_STATUSES,
    EventIngest,
    EventRecord,
    FunctionSet,
    HistoryRecord,
    IngestResult,
    Lease,
    NewRun,
    PassCommit,
    RunEnd,
    RunRecord,
    SkipRecord,
    SpentRun,
    StepRecord,
    WaitMatcher,
    WaitRecord,
    Wake,
)

DEDUP_WINDOW = 24 * 3600.0
_SETTLED = ("COMPLETED", "FAILED")
K = TypeVar("K")
V = TypeVar("V")

if TYPE_CHECKING:
    from stepline.store.memory import MemoryStore


class MemoryTx(MemoryControlVerbs, MemoryAppVerbs):
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
            return ingest(self, items, now, wait_matches)

    def stored_event_ids(self, internal_ids: Sequence[str]) -> set[str]:
        events = self._s._events
        return {i for i in internal_ids if i in events}

    def run_events(self, run_id: str) -> list[EventRecord]:
        run = self._s._runs.get(run_id)
        events = self._s._events
        return [] if run is None else [events[i] for i in run.event_ids if i in events]

    # -- UnheardEvents: the announcements of cancelled runs (engine/_announce.py) ---------------
    def encoded_run_events(self, run_ids: Sequence[str]) -> list[list[tuple[str, bytes]]]:
        return [
            [(e.name, dumps_exact(e.payload())) for e in self.run_events(run_id)]
            for run_id in run_ids
        ]

    def store_unheard(
        self, events: Sequence[tuple[str, str, bytes]], now: float, sender: FunctionSet | None
    ) -> bool:
        with self._verb():
            if not unheard(self, [name for _, name, _ in events], sender, now):
                return False
            for internal_id, name, data in events:
                self._insert_event(EventRecord(internal_id, name, loads(data), {}, None, now), now)
            return True

    def admit_taken(self, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
        with self._verb():
            return admit_taken(self, items, now)

    def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None:
        skip = SkipRecord(event_id, function_id, reason, now)
        self._put(self._s._skips, len(self._s._skips), skip)

    def add_event_effects(self, effects: Sequence[tuple[str, str, str]]) -> None:
        for effect in effects:
            self._put(self._s._effects, effect, None)

    def create_run(self, new_run: NewRun, now: float, due_at: float | None = None) -> None:
        a = new_run.admission
        run = RunRecord(
            run_id=new_run.run_id,
            function_id=new_run.function_id,
            status="QUEUED",
            event_ids=list(new_run.event_ids),
            created_at=now,
            parent_run_id=new_run.parent_run_id,
            parent_step_hash=new_run.parent_step_hash,
            start_timeout=a.start_timeout,
            finish_timeout=a.finish_timeout,
            app_id=new_run.app_id,
        )
        s = self._s
        self._put(s._runs, new_run.run_id, run)
        for event_id in new_run.event_ids:
            self._put(s._effects, (event_id, new_run.run_id, STARTED), None)
        item = QueueItem(
            due_at=now if due_at is None else due_at,
            function_id=new_run.function_id,
            concurrency=a.concurrency,
            app_id=new_run.app_id,
        )
        self._put(s._queue, new_run.run_id, item)
        if a.singleton_key is not None:
            self._put(s._singletons, new_run.run_id, a.singleton_key)
        if a.start_timeout is not None:
            self._put(s._start_deadlines, new_run.run_id, now + a.start_timeout)
        for spec in a.cancel_on:
            matcher = WaitRecord(
                new_id(now),
                new_run.run_id,
                "",
                spec.event_name,
                spec.expression,
                spec.index_path,
                spec.index_value,
                None if spec.timeout is None else now + spec.timeout,
                now,
            )
            self._put(s._matchers, matcher.wait_id, matcher)
        self._log(HistoryRecord(new_run.run_id, now, "RUN_QUEUED"))

    # -- EventPrimitives (see _primitives; the memory store scans: it keeps no index) ------------
    def insert_events(self, events: Sequence[EventRecord], now: float) -> list[bool]:
        return [self._insert_event(event, now) for event in events]

    def _insert_event(self, event: EventRecord, now: float) -> bool:
        s = self._s
        self._put(s._events, event.internal_id, event)
        self._put(s._received, event.internal_id, now)
        key = event.dedup_key()
        if key is None:
            return True
        seen = s._dedup.get(key)
        if seen is not None and seen > now - DEDUP_WINDOW:
            self._put(s._duplicates, event.internal_id, True)
            return False
        self._put(s._dedup, key, now)
        return True

    def wait_paths(self, event_name: str) -> Sequence[str]:
        return _paths(self._s._waits.values(), event_name)

    def unindexed_waits(self, event_name: str) -> list[WaitRecord]:
        return [
            w
            for w in self._s._waits.values()
            if w.event_name == event_name and w.index_path is None
        ]

    def indexed_waits(self, event_name: str, path: str, values: Sequence[str]) -> list[IndexedWait]:
        wanted = set(values)
        return [
            indexed_wait(w)
            for w in self._s._waits.values()
            if w.event_name == event_name and w.index_path == path and w.index_value in wanted
        ]

    def matcher_paths(self, event_name: str) -> Sequence[str]:
        return _paths(self._s._matchers.values(), event_name)

    def unindexed_matchers(self, event_name: str, now: float) -> list[WaitRecord]:
        return [
            m
            for m in self._s._matchers.values()
            if m.event_name == event_name
            and m.index_path is None
            and (m.expires_at is None or m.expires_at >= now)
        ]

    def indexed_matchers(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[WaitRecord]:
        wanted = set(values)
        return [
            m
            for m in self._s._matchers.values()
            if m.event_name == event_name
            and m.index_path == path
            and m.index_value in wanted
            and (m.expires_at is None or m.expires_at >= now)
        ]

    def delete_wait(self, run_id: str, wait_id: str) -> bool:
        wait = self._s._waits.get(wait_id)
        if wait is None:
            return False
        self._pop(self._s._waits, wait_id)
        return self._s.pending(wait)  # a stale wait's row goes unclaimed (_primitives)

    def resume_waits(self, resumed: Sequence[ResumedWait], now: float) -> None:
        for wait in resumed:
            memo = self._memo(wait.run_id)
            step = memo.get(wait.step_hash)
            if step is not None and step.status == "PENDING":  # a stale wait's step is kept
                completed = replace(
                    step, status="COMPLETED", output_json=wait.event_json, ended_at=now
                )
                self._put(memo, wait.step_hash, completed)
            self.wake_run(wait.run_id, now)
            self._log(
                HistoryRecord(
                    wait.run_id,
                    now,
                    "WAIT_MATCHED",
                    step.step_id if step else None,
                    data={"event_id": wait.event_id},
                )
            )

    # -- RunPrimitives ----------------------------------------------------------------------------
    def mark_cancelled(self, run_id: str, now: float, error: dict[str, Any]) -> EndedRun | None:
        s = self._s
        run = s._runs.get(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            return None
        self._put(s._runs, run_id, replace(run, status="CANCELLED", ended_at=now, error=error))
        item = s._queue.get(run_id)
        if item is not None and item.lease_token is not None:  # its pass may still commit
            self._put(s._cancelled_leases, run_id, item.lease_token)
        return EndedRun(run.function_id, run.parent_run_id, run.parent_step_hash)

    def drop_run_work(self, run_id: str) -> None:
        self._pop(self._s._queue, run_id)
        self._drop_waits_of(run_id)
        self._drop_executing_steps(run_id)

    def _drop_executing_steps(self, run_id: str) -> None:
        """Drop the marks of steps a pass was executing when the run ended (their results
        never came; a cancelled pass's own result is kept afterwards if it comes)."""
        memo = self._s._steps.get(run_id, {})
        for step_hash in [h for h, step in memo.items() if step.status == "RUNNING"]:
            self._pop(memo, step_hash)

    def append_history(self, records: Sequence[HistoryRecord], worker_id: str | None) -> None:
        for record in records:
            self._log(replace(record, worker_id=worker_id))

    def settle_pending_step(self, wake: Wake, now: float) -> bool:
        parent = self._s._runs.get(wake.run_id)
        if parent is None or parent.status in TERMINAL_STATUSES:
            return False
        memo = self._s._steps.get(wake.run_id, {})
        pending = memo.get(wake.step_hash)
        if pending is None or pending.status != "PENDING":
            return False
        settled = replace(
            pending,
            status=wake.status,
            output_json=wake.output_json,
            error=wake.error,
            ended_at=now,
            attempts=1,
        )
        self._put(memo, wake.step_hash, settled)
        return True

    def wake_run(self, run_id: str, now: float) -> None:
        item = self._s._queue.get(run_id)
        if item is None:
            return
        due_at = now if item.lease_owner is None else item.due_at
        self._put(self._s._queue, run_id, replace(item, wake=True, due_at=due_at))

    def _drop_waits_of(self, run_id: str) -> None:
        """Remove a run's waits and cancel matchers (it ended)."""
        for wait_id in [w.wait_id for w in self._s._waits.values() if w.run_id == run_id]:
            self._pop(self._s._waits, wait_id)
        for matcher_id in [m.wait_id for m in self._s._matchers.values() if m.run_id == run_id]:
            self._pop(self._s._matchers, matcher_id)

    # -- passes -----------------------------------------------------------------------------------
    def commit_pass(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult] | None:
        with self._verb():
            return commit_pass(self, commit, now, wait_matches)

    # -- PassPrimitives ---------------------------------------------------------------------------
    def hold_lease(self, run_id: str, token: str) -> str | None:
        item = self._s._queue.get(run_id)
        return None if item is None or item.lease_token != token else item.lease_owner

    def cancelled_lease(self, run_id: str) -> tuple[str, str | None] | None:
        token = self._s._cancelled_leases.get(run_id)
        return None if token is None else (token, self._s._runs[run_id].worker_id)

    def put_steps(self, steps: Sequence[StepRecord]) -> None:
        for step in steps:
            self._put(self._memo(step.run_id), step.hash, replace(step))

    def put_steps_if_unsettled(self, steps: Sequence[StepRecord]) -> None:
        for step in steps:
            memo = self._memo(step.run_id)
            current = memo.get(step.hash)
            if current is None or current.status not in _SETTLED:
                self._put(memo, step.hash, replace(step))

    def insert_waits(self, waits: Sequence[WaitRecord]) -> None:
        for wait in waits:
            self._put(self._s._waits, wait.wait_id, wait)

    def mark_running(self, run_id: str, started_at: float) -> None:
        s = self._s
        run = s._runs[run_id]
        started_at = started_at if run.started_at is None else run.started_at
        self._put(s._runs, run_id, replace(run, status="RUNNING", started_at=started_at))
        self._made_progress(run_id)

    def end_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        run = self._s._runs[run_id]
        ended = replace(
            run,
            status=end.status,
            started_at=started_at if run.started_at is None else run.started_at,
            attempt=run.attempt if end.attempt is None else end.attempt,
            output_json=end.output_json,
            error=end.error,
            ended_at=now,
        )
        self._put(self._s._runs, run_id, ended)

    def suspend_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        s = self._s
        run = s._runs[run_id]
        suspended = replace(
            run,
            status=end.status,
            started_at=started_at if run.started_at is None else run.started_at,
            attempt=run.attempt if end.attempt is None else end.attempt,
        )
        self._put(s._runs, run_id, suspended)
        item = replace(s._queue[run_id], passes=0)
        self._put(s._queue, run_id, item.released(now if item.wake else end.due_at))

    def _made_progress(self, run_id: str) -> None:
        """A commit of the run's own is progress (see ``lease_due``)."""
        item = self._s._queue.get(run_id)
        if item is not None and item.passes:
            self._put(self._s._queue, run_id, replace(item, passes=0))

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
        """Lease due runs of ``functions`` (due by ``due_by``, default ``now``) in the fair
        order (``_fair_order``), skipping paused functions and full concurrency keys; a run
        leased ``max_passes`` times without a commit of its own is failed instead."""
        horizon = now if due_by is None else max(now, due_by)
        s = self._s
        queue = s._queue
        expired, live = queue.expired_and_live(now)
        busy: Counter[str] = Counter()
        limits: dict[str, int] = {}
        for row in live:
            for key, cap in row.concurrency:
                busy[key] += 1
                limits[key] = cap
        full = {key for key, n in busy.items() if n >= limits[key]}
        candidates: list[Candidate] = [
            candidate_of(run_id, row)
            for run_id, row in expired
            if row.due_at is not None
            and row.app_id in (functions.app_id, "")
            and row.function_id in functions.function_ids
            and not s._is_paused(functions.app_id, row.function_id)
        ]
        window = limit * 4 + 16
        for app_id in (functions.app_id, "") if functions.app_id else ("",):
            for function_id in functions.function_ids:
                if s._is_paused(functions.app_id, function_id):
                    continue
                served = (app_id, function_id)
                found = list(queue.oldest(served, horizon, window, full))
                candidates += found
                if len(found) >= window:  # more due than the window: its groups' oldest too
                    visits = max(limit, GROUP_VISITS)
                    candidates += queue.group_heads(served, horizon, visits)
        live_groups = [(row.function_id, group_of(row.concurrency)) for row in live]
        picked = fair_pick(candidates, live_groups, busy, limit)
        token = secrets.token_hex(8)
        taken: list[str] = []
        previous: dict[str, str | None] = {}
        with self._verb():
            for run_id in fail_spent(self, [run.run_id for run in picked], now, max_passes, failed):
                item = queue[run_id]
                previous[run_id] = item.lease_owner
                leased = replace(
                    item,
                    lease_owner=owner,
                    lease_token=token,
                    lease_expires_at=now + ttl,
                    wake=False,
                    app_id=item.app_id or functions.app_id,
                    passes=item.passes + 1,
                )
                self._put(queue, run_id, leased)
                self._mark_leased(run_id, owner, now, functions.app_id)
                taken.append(run_id)
        due = {run.run_id: run.due_at for run in picked if run.due_at > now}
        functions_of = {run.run_id: run.function_id for run in picked}
        return [
            Lease(r, token, previous[r], due.get(r), function_id=functions_of[r]) for r in taken
        ]

    def spent_runs(self, run_ids: Sequence[str], max_passes: int) -> list[SpentRun]:
        s = self._s
        spent = [r for r in run_ids if s._queue[r].passes >= max_passes]
        runs = [s._runs[r] for r in spent]
        return [
            SpentRun(r.run_id, r.parent_run_id, r.parent_step_hash, r.function_id) for r in runs
        ]

    def fail_run(self, run_id: str, error: dict[str, Any], now: float) -> None:
        run = self._s._runs[run_id]
        self._put(self._s._runs, run_id, replace(run, status="FAILED", ended_at=now, error=error))

    def _mark_leased(self, run_id: str, owner: str, now: float, app_id: str) -> None:
        """A leased run is RUNNING, by ``owner``; its first pass starts it (unless its start
        timeout passed: that pass cancels it)."""
        run = self._s._runs[run_id]
        started_at = run.started_at
        late = run.start_timeout is not None and now > run.created_at + run.start_timeout
        if started_at is None and not late:
            started_at = now
            self._log(HistoryRecord(run_id, now, "RUN_STARTED", worker_id=owner))
        running = replace(
            run,
            status="RUNNING",
            started_at=started_at,
            worker_id=owner,
            app_id=run.app_id or app_id,
        )
        self._put(self._s._runs, run_id, running)

    def mark_steps_running(
        self, run_id: str, lease_token: str, steps: Sequence[StepRecord]
    ) -> bool:
        item = self._s._queue.get(run_id)
        if item is None or item.lease_token != lease_token:
            return False
        with self._verb():
            memo = self._memo(run_id)
            for step in steps:
                current = memo.get(step.hash)
                if current is not None and (
                    current.status in _SETTLED or current.attempts > step.attempts
                ):
                    continue  # a result, or the end of this attempt: the mark is late
                marked = replace(step, status="RUNNING")
                if current is not None:
                    marked = replace(current, status="RUNNING", started_at=step.started_at)
                self._put(memo, step.hash, marked)
        return True

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
        hashes: list[str] = []
        with self._verb():
            memo = self._memo(run_id)
            for wait in expired:
                self._pop(s._waits, wait.wait_id)
                if not self._s.pending(wait):
                    continue  # a stale wait (the run moved on): its row goes, nothing times out
                step = memo[wait.step_hash]
                timed_out = replace(step, status="COMPLETED", output_json=b"null", ended_at=now)
                self._put(memo, wait.step_hash, timed_out)
                self._log(
                    HistoryRecord(
                        run_id, now, "WAIT_TIMED_OUT", step.step_id, worker_id=item.lease_owner
                    )
                )
                hashes.append(wait.step_hash)
        return hashes

    def overdue_starts(
        self, now: float, functions: FunctionSet, limit: int
    ) -> list[tuple[str, str, float]]:
        with self._verb():
            s = self._s
            overdue: list[tuple[float, RunRecord]] = []
            for run_id, deadline in list(s._start_deadlines.items()):
                run = s._runs.get(run_id)
                if run is None or run.status != "QUEUED" or run.started_at is not None:
                    self._pop(s._start_deadlines, run_id)
                elif deadline < now and s.serves(functions, run):
                    overdue.append((deadline, run))
            overdue.sort(key=lambda pair: pair[0])
            return [(r.run_id, r.function_id, r.start_timeout or 0.0) for _, r in overdue[:limit]]

    def cancel_run(
        self, run_id: str, now: float, reason: str, event_id: str | None = None
    ) -> str | None:
        with self._verb():
            return cancel_by(self, run_id, now, reason, event_id)


def _paths(records: Iterable[WaitRecord], event_name: str) -> list[str]:
    """The index paths of the waits (or matchers) for ``event_name``."""
    paths = {r.index_path for r in records if r.event_name == event_name}
    return sorted(p for p in paths if p is not None)


if TYPE_CHECKING:  # mypy proves the backend supplies every primitive of the shared algorithms

    def _supplies_primitives(tx: MemoryTx) -> PassTx:
        return tx
