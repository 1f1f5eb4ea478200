"""The SQLite store's flow-control verbs: admission state, cancel matchers, deferrals (debounce,
batch), cron schedules, pausing, replay and concurrency-aware leasing.

A mixin of ``_SQLiteTx``: every method runs inside the caller's transaction on ``self._c``.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from stepline._ids import new_id
from stepline.expressions import value_at
from stepline.serde import dumps, loads
from stepline.store._admission_rules import (
    IDEMPOTENCY_WINDOW,
    DeferralRow,
    flush_due,
    new_run_from_dict,
    new_run_to_dict,
)
from stepline.store.records import (
    CronRow,
    EventRecord,
    Lease,
    NewRun,
    WaitMatcher,
    WaitRecord,
)
from stepline.store.sqlite import queries as q


class SQLiteControlVerbs:
    """Flow-control verbs over one SQLite connection inside a transaction."""

    _c: sqlite3.Connection

    if TYPE_CHECKING:  # provided by _SQLiteTx

        def _savepoint(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def cancel_run(self, run_id: str, now: float, reason: str) -> str | None: ...

        def _cancel(self, run_id: str, now: float, reason: str) -> str | None: ...

        def _indexed_paths(self, query: str, event_name: str) -> list[str]: ...

        def _unindexed_rows(self, query: str, event_name: str, *params: Any) -> list[Any]: ...

        def _added_unindexed(self, query: str, event_name: str) -> None: ...

        def _add_indexed_path(
            self, insert: str, query: str, event_name: str, path: str
        ) -> None: ...

    # -- admission --------------------------------------------------------------------------------
    def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None:
        self._c.execute(q.INSERT_SKIP, (event_id, function_id, reason, now))

    def create_run(self, new_run: NewRun, now: float, due_at: float | None = None) -> None:
        c = self._c
        a = new_run.admission
        c.execute(
            q.INSERT_RUN,
            (
                new_run.run_id,
                new_run.function_id,
                dumps(list(new_run.event_ids)).decode(),
                now,
                new_run.parent_run_id,
                new_run.parent_step_hash,
                a.start_timeout,
                a.finish_timeout,
                a.singleton_key,
            ),
        )
        c.executemany(q.INSERT_RUN_EVENT, [(e, new_run.run_id) for e in new_run.event_ids])
        slots = [*a.concurrency, (None, None), (None, None)][:2]
        c.execute(
            q.INSERT_QUEUE,
            (
                new_run.run_id,
                now if due_at is None else due_at,
                new_run.function_id,
                slots[0][0],
                slots[0][1],
                slots[1][0],
                slots[1][1],
            ),
        )
        for spec in a.cancel_on:
            expires = None if spec.timeout is None else now + spec.timeout
            c.execute(
                q.INSERT_MATCHER,
                (
                    new_id(now),
                    new_run.run_id,
                    spec.event_name,
                    spec.expression,
                    spec.index_path,
                    spec.index_value,
                    expires,
                    now,
                ),
            )
            if spec.index_path is None:
                self._added_unindexed(q.MATCHERS_UNINDEXED, spec.event_name)
            else:
                self._add_indexed_path(
                    q.INSERT_MATCHER_PATH, q.MATCHER_PATHS, spec.event_name, spec.index_path
                )
        c.execute(q.INSERT_HISTORY, (new_run.run_id, now, "RUN_QUEUED", None, None, None, None))

    def _apply_cancel_matchers(
        self, event: EventRecord, now: float, wait_matches: WaitMatcher
    ) -> list[tuple[str, str]]:
        c = self._c
        rows = self._unindexed_rows(q.MATCHERS_UNINDEXED, event.name, now)
        candidates = [WaitRecord(*r) for r in rows]
        paths = self._indexed_paths(q.MATCHER_PATHS, event.name)
        if paths:
            payload = event.payload()
            for path in paths:
                value = value_at(payload, path)
                if value is not None:
                    found = c.execute(q.MATCHERS_INDEXED, (event.name, path, value, now))
                    candidates.extend(WaitRecord(*r) for r in found)
        cancelled: list[tuple[str, str]] = []
        for matcher in sorted(candidates, key=lambda m: m.created_at):
            if any(run_id == matcher.run_id for run_id, _ in cancelled):
                continue
            if not wait_matches(matcher, event):
                continue
            function_id = self._cancel(matcher.run_id, now, f"cancelled by event {event.name}")
            if function_id is not None:
                cancelled.append((matcher.run_id, function_id))
        return cancelled

    # -- FlowState and DeferralState --------------------------------------------------------------
    def idempotency_seen(self, key: str, now: float) -> bool:
        row = self._c.execute(q.IDEMPOTENCY_SEEN, (key,)).fetchone()
        return row is not None and row[0] > now - IDEMPOTENCY_WINDOW

    def remember_idempotency(self, key: str, now: float) -> None:
        self._c.execute(q.REMEMBER_IDEMPOTENCY, (key, now))

    def gcra_tat(self, bucket: str) -> float | None:
        row = self._c.execute(q.GCRA_TAT, (bucket,)).fetchone()
        return None if row is None else float(row[0])

    def set_gcra_tat(self, bucket: str, tat: float) -> None:
        self._c.execute(q.SET_GCRA_TAT, (bucket, tat))

    def active_singleton_runs(self, key: str) -> list[str]:
        return [r[0] for r in self._c.execute(q.ACTIVE_SINGLETON_RUNS, (key,))]

    def get_deferral(self, kind: str, function_id: str, key: str) -> DeferralRow | None:
        row = self._c.execute(q.GET_DEFERRAL, (kind, function_id, key)).fetchone()
        return None if row is None else _deferral(row)

    def put_deferral(self, row: DeferralRow) -> None:
        self._c.execute(
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
        self._c.execute(q.DELETE_DEFERRAL, (row.kind, row.function_id, row.key))

    # -- verbs ------------------------------------------------------------------------------------
    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self._savepoint():
            yield

    def flush_deferrals(self, now: float) -> list[str]:
        with self._savepoint() as c:
            rows = [_deferral(r) for r in c.execute(q.DUE_DEFERRALS, (now,)).fetchall()]
            return flush_due(self, rows, now)

    def sync_crons(self, function_ids: Sequence[str], schedules: Sequence[CronRow]) -> None:
        with self._savepoint() as c:
            wanted = {(r.function_id, r.cron) for r in schedules}
            if function_ids:
                marks = ",".join("?" * len(function_ids))
                for fn, cron, _ in c.execute(q.CRONS_OF.format(marks=marks), list(function_ids)):
                    if (fn, cron) not in wanted:
                        c.execute(q.DELETE_CRON, (fn, cron))
            c.executemany(q.INSERT_CRON, [(r.function_id, r.cron, r.next_at) for r in schedules])

    def due_crons(self, now: float, function_ids: Sequence[str]) -> list[CronRow]:
        rows = self._c.execute(q.DUE_CRONS, (now, dumps(list(function_ids)).decode()))
        return [CronRow(*r) for r in rows]

    def advance_cron(self, row: CronRow, next_at: float) -> bool:
        cursor = self._c.execute(q.ADVANCE_CRON, (next_at, row.function_id, row.cron, row.next_at))
        return cursor.rowcount == 1

    def purge_expired(self, now: float) -> int:
        with self._savepoint() as c:
            horizon = now - IDEMPOTENCY_WINDOW
            count = c.execute(q.PURGE_SENDER_IDS, (horizon,)).rowcount
            count += c.execute(q.PURGE_IDEMPOTENCY, (horizon,)).rowcount
            return count + c.execute(q.PURGE_GCRA, (now,)).rowcount

    def purge_before(self, cutoff: float, limit: int) -> int:
        with self._savepoint() as c:
            run_ids = [r[0] for r in c.execute(q.ENDED_BEFORE, (cutoff, limit))]
            for statement in (
                q.DELETE_STEPS_OF_RUN,
                q.DELETE_HISTORY_OF_RUN,
                q.DELETE_RUN_EVENTS_OF_RUN,
                q.DELETE_RUN,
            ):
                c.executemany(statement, [(r,) for r in run_ids])
            c.execute(q.PURGE_EVENTS, (cutoff,))
            c.execute(q.PURGE_SKIPS, (cutoff,))
            return len(run_ids)

    def set_paused(self, function_id: str, paused: bool) -> None:
        self._c.execute(q.PAUSE if paused else q.RESUME, (function_id,))

    def replay_run(
        self, run_id: str, new_run: NewRun, before_position: int | None, now: float
    ) -> bool:
        new_run_id = new_run.run_id
        with self._savepoint() as c:
            if c.execute(q.SELECT_RUN, (run_id,)).fetchone() is None:
                return False
            self.create_run(new_run, now)
            if before_position is not None:
                c.execute(q.COPY_STEPS, (new_run_id, run_id, before_position))
            history = (new_run_id, now, "RUN_REPLAYED", None, None, None)
            c.execute(q.INSERT_HISTORY, (*history, dumps({"of": run_id}).decode()))
            return True

    def lease_due(self, owner: str, now: float, limit: int, ttl: float) -> list[Lease]:
        """Lease due runs in queue order, skipping paused functions and full concurrency keys
        (the keys held by live leases are few, so they are counted first)."""
        token = secrets.token_hex(8)
        taken: list[str] = []
        with self._savepoint() as c:
            busy: Counter[str] = Counter()
            limits: dict[str, int] = {}
            for key1, limit1, key2, limit2 in c.execute(q.BUSY_SLOTS, (now,)):
                for key, cap in ((key1, limit1), (key2, limit2)):
                    if key is not None:
                        busy[key] += 1
                        limits[key] = cap
            full = dumps([k for k, n in busy.items() if n >= limits[k]]).decode()
            rows = c.execute(q.SELECT_DUE, (now, full, full, now, limit * 4 + 16)).fetchall()
            for run_id, key1, limit1, key2, limit2 in rows:
                if len(taken) >= limit:
                    break
                slots = [(k, n) for k, n in ((key1, limit1), (key2, limit2)) if k is not None]
                if any(busy[k] >= n for k, n in slots):
                    continue
                busy.update(k for k, _ in slots)
                taken.append(run_id)
            c.executemany(q.TAKE_LEASE, [(owner, token, now + ttl, r) for r in taken])
        return [Lease(r, token) for r in taken]


def _deferral(r: Sequence[Any]) -> DeferralRow:
    return DeferralRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], new_run_from_dict(loads(r[6])))
