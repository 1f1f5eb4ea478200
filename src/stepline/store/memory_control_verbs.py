"""The memory store's flow-control verbs: admission state, deferrals (debounce, batch), cron
schedules, pausing, replay and retention. A mixin of ``MemoryTx``: every write goes through its
undo journal (``_put``/``_pop``), so each verb stays all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from stepline.gcra import Bucket
from stepline.store._admission_rules import IDEMPOTENCY_WINDOW, DeferralRow, flush_due
from stepline.store.records import (
    TERMINAL_STATUSES,
    CronRow,
    FunctionSet,
    HistoryRecord,
    IngestResult,
    NewRun,
    Purged,
    StepRecord,
)

if TYPE_CHECKING:
    from stepline.store.memory import MemoryStore

K = TypeVar("K")
V = TypeVar("V")


class MemoryControlVerbs:
    """Flow-control verbs over a locked MemoryStore."""

    _s: MemoryStore

    if TYPE_CHECKING:  # provided by MemoryTx

        def _verb(self) -> AbstractContextManager[None]: ...

        def _put(self, table: dict[K, V], key: K, value: V) -> None: ...

        def _pop(self, table: dict[K, V], key: K) -> None: ...

        def _memo(self, run_id: str) -> dict[str, StepRecord]: ...

        def _log(self, record: HistoryRecord) -> None: ...

        def create_run(self, new_run: NewRun, now: float, due_at: float | None = None) -> None: ...

        def add_event_effects(self, effects: Sequence[tuple[str, str, str]]) -> None: ...

        def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None: ...

        def cancel_run(
            self, run_id: str, now: float, reason: str, event_id: str | None = None
        ) -> str | None: ...

        def adopt_unowned(self, functions: FunctionSet) -> int: ...

    # -- FlowState and DeferralState --------------------------------------------------------------
    def idempotency_seen(self, key: str, now: float) -> bool:
        seen = self._s._idempotency.get(key)
        return seen is not None and seen > now - IDEMPOTENCY_WINDOW

    def remember_idempotency(self, key: str, now: float) -> None:
        self._put(self._s._idempotency, key, now)

    def gcra_bucket(self, name: str) -> Bucket | None:
        return self._s._gcra.get(name)

    def set_gcra_bucket(self, name: str, bucket: Bucket) -> None:
        self._put(self._s._gcra, name, bucket)

    def active_singleton_runs(self, key: str) -> list[str]:
        s = self._s
        return [
            run_id
            for run_id, k in s._singletons.items()
            if k == key and s._runs[run_id].status not in TERMINAL_STATUSES
        ]

    def get_deferral(self, kind: str, function_id: str, key: str) -> DeferralRow | None:
        return self._s._deferrals.get((kind, function_id, key))

    def put_deferral(self, row: DeferralRow) -> None:
        self._put(self._s._deferrals, (row.kind, row.function_id, row.key), row)

    def delete_deferral(self, row: DeferralRow) -> None:
        self._pop(self._s._deferrals, (row.kind, row.function_id, row.key))

    # -- schedules, deferred runs, pausing, replay ------------------------------------------------
    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self._verb():
            yield

    def flush_deferrals(self, now: float) -> list[IngestResult]:
        with self._verb():
            due = [row for row in self._s._deferrals.values() if row.due_at <= now]
            return flush_due(self, due, now)

    def sync_crons(self, functions: FunctionSet, schedules: Sequence[CronRow]) -> None:
        with self._verb():
            self.adopt_unowned(functions)
            app, ids = functions.app_id, set(functions.function_ids)
            wanted = {(app, r.function_id, r.cron): replace(r, app_id=app) for r in schedules}
            for key in [k for k in self._s._crons if k[0] == app and k[1] in ids]:
                if key not in wanted:
                    self._pop(self._s._crons, key)
            for key, row in wanted.items():
                if key not in self._s._crons:
                    self._put(self._s._crons, key, row)

    def due_crons(self, now: float, functions: FunctionSet) -> list[CronRow]:
        ids = set(functions.function_ids)
        return [
            r
            for r in self._s._crons.values()
            if r.next_at <= now and r.app_id == functions.app_id and r.function_id in ids
        ]

    def advance_cron(self, row: CronRow, next_at: float) -> bool:
        key = (row.app_id, row.function_id, row.cron)
        current = self._s._crons.get(key)
        if current is None or current.next_at != row.next_at:
            return False
        self._put(self._s._crons, key, replace(row, next_at=next_at))
        return True

    def purge_expired(self, now: float, limit: int = 10_000) -> int:
        s = self._s
        horizon = now - IDEMPOTENCY_WINDOW
        stale = [
            (s._dedup, [k for k, seen in s._dedup.items() if seen < horizon][:limit]),
            (s._idempotency, [k for k, seen in s._idempotency.items() if seen < horizon][:limit]),
        ]
        emptied = [k for k, b in s._gcra.items() if b.tat < now][:limit]
        gone = [k for k, w in s._workers.items() if w.expires_at < horizon][:limit]
        with self._verb():
            for table, keys in stale:
                for key in keys:
                    self._pop(table, key)
            for key in emptied:
                self._pop(s._gcra, key)
            for key in gone:
                self._pop(s._workers, key)
        return sum(len(keys) for _, keys in stale) + len(emptied) + len(gone)

    def purge_resolved_waits(self, limit: int) -> int:
        return 0  # a wait is deleted as it is resolved

    def purge_before(self, cutoff: float, limit: int) -> Purged:
        s = self._s
        ended = [
            r.run_id
            for r in s._runs.values()
            if r.status in TERMINAL_STATUSES and r.ended_at is not None and r.ended_at < cutoff
        ][:limit]
        with self._verb():
            for run_id in ended:
                self._pop(s._runs, run_id)
                self._pop(s._steps, run_id)
                self._pop(s._history, run_id)
                self._pop(s._singletons, run_id)
                self._pop(s._cancelled_leases, run_id)
            gone = set(ended)
            for effect in [key for key in s._effects if key[1] in gone]:
                self._pop(s._effects, effect)
            referenced = {key[0] for key in s._effects}
            referenced |= {e for row in s._deferrals.values() for e in row.event_ids}
            expired = [  # inbox rows nobody took within the retention: their events go too
                seq
                for seq, (_, _, event_id) in s._inbox.items()
                if s._received.get(event_id, cutoff) < cutoff
            ][:limit]
            for seq in expired:
                self._pop(s._inbox, seq)
            referenced |= {event_id for _, _, event_id in s._inbox.values()}
            events = [
                event_id
                for event_id, event in s._events.items()
                if event_id not in referenced and s._received.get(event_id, event.ts) < cutoff
            ][:limit]
            for event_id in events:
                self._pop(s._events, event_id)
                self._pop(s._received, event_id)
                self._pop(s._duplicates, event_id)
            skips = [seq for seq, skip in s._skips.items() if skip.at < cutoff][:limit]
            for seq in skips:
                self._pop(s._skips, seq)
        return Purged(len(ended), len(events), len(skips))

    def put_sdk_app(self, app_id: str, name: str, registration: bytes, now: float) -> None:
        with self._verb():
            self._put(self._s._sdk_apps, (app_id, name), bytes(registration))

    def set_paused(self, function_id: str, paused: bool, app_id: str = "") -> None:
        held = self._s._paused
        with self._verb():
            if paused:
                self._put(held, (app_id, function_id), True)
                return
            every = app_id == ""
            for key in [k for k in held if k[1] == function_id and (every or k[0] in (app_id, ""))]:
                self._pop(held, key)

    def replay_run(
        self, run_id: str, new_run: NewRun, before_position: int | None, now: float
    ) -> bool:
        s = self._s
        if run_id not in s._runs:
            return False
        new_run_id = new_run.run_id
        with self._verb():
            self.create_run(new_run, now)
            if before_position is not None:
                memo = self._memo(new_run_id)
                for step in s._steps.get(run_id, {}).values():
                    if step.position < before_position and step.status == "COMPLETED":
                        self._put(memo, step.hash, replace(step, run_id=new_run_id))
            self._log(HistoryRecord(new_run_id, now, "RUN_REPLAYED", data={"of": run_id}))
        return True
