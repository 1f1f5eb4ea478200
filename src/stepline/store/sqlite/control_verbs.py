"""The SQLite store's flow-control verbs: admission state, cancel matchers, deferrals (debounce,
batch), cron schedules, pausing, replay and concurrency-aware leasing.

A mixin of ``_SQLiteTx``: every method runs inside the caller's transaction on ``self._c``.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from stepline._ids import new_id
from stepline.gcra import Bucket
from stepline.serde import dumps, loads
from stepline.store import _rows as shapes
from stepline.store._admission_rules import (
    IDEMPOTENCY_WINDOW,
    DeferralRow,
    flush_due,
    new_run_from_dict,
    new_run_to_dict,
)
from stepline.store._fair_order import Candidate, fair_pick, group_of
from stepline.store._index_paths import IndexPaths
from stepline.store._pass_rules import fail_spent
from stepline.store._primitives import LeasePrimitives
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    RESUMED,
    CronRow,
    FunctionSet,
    IngestResult,
    Lease,
    NewRun,
    Purged,
    RunState,
    SpentRun,
    StepRecord,
    WorkerRecord,
)
from stepline.store.sqlite import _derived
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._arms import GROUP_VISITS, app_ids, chunks, unpaused
from stepline.store.sqlite._multirow import insert_rows
from stepline.store.sqlite._savepoints import JobSavepoint, Optimistic
from stepline.store.sqlite.reads import load_state


class SQLiteControlVerbs:
    """Flow-control verbs over one SQLite connection inside a transaction."""

    _c: sqlite3.Connection
    _group_cursors: dict[tuple[str, str], str]  # per (app, function): see ``_group_heads``
    _opened: list[int]  # see _savepoints
    _optimistic: Optimistic | None

    if TYPE_CHECKING:  # provided by _SQLiteTx

        @property
        def _index(self) -> IndexPaths: ...

        def _savepoint(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _forget_reads(self) -> None: ...

        def cancel_run(
            self, run_id: str, now: float, reason: str, event_id: str | None = None
        ) -> str | None: ...

        def _ended_here(self, run_id: str) -> bool: ...

    # -- admission --------------------------------------------------------------------------------
    def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None:
        self._c.execute(q.INSERT_SKIP, (event_id, function_id, reason, now))

    def create_run(self, new_run: NewRun, now: float, due_at: float | None = None) -> None:
        c = self._c
        c.execute(q.INSERT_RUN, shapes.run_params(new_run, now))
        c.executemany(q.INSERT_RUN_EVENT, [(e, new_run.run_id) for e in new_run.event_ids])
        c.execute(q.INSERT_QUEUE, shapes.queue_params(new_run, now, due_at))
        for spec in new_run.admission.cancel_on:
            c.execute(
                q.INSERT_MATCHER, shapes.matcher_params(new_run.run_id, spec, now, new_id(now))
            )
            if spec.index_path is None:
                self._index.added_unindexed(q.MATCHERS_UNINDEXED, spec.event_name)
            else:
                self._index.add_indexed_path(
                    q.INSERT_MATCHER_PATH, q.MATCHER_PATHS, spec.event_name, spec.index_path
                )
        c.execute(q.INSERT_RUN_QUEUED, (new_run.run_id, now))  # no None to bind

    def add_event_effects(self, effects: Sequence[tuple[str, str, str]]) -> None:
        # a resumed run's link is its WAIT_MATCHED row, written with the wait's resolution
        # (``resume_waits``), which names the event (schema 23: read by ``EVENT_RUNS``)
        kept = [effect for effect in effects if effect[2] != RESUMED]
        if kept:
            insert_rows(self._c, q.INSERT_EVENT_EFFECT, kept)

    # -- FlowState and DeferralState --------------------------------------------------------------
    def idempotency_seen(self, key: str, now: float) -> bool:
        row = self._c.execute(q.IDEMPOTENCY_SEEN, (key,)).fetchone()
        return row is not None and row[0] > now - IDEMPOTENCY_WINDOW

    def remember_idempotency(self, key: str, now: float) -> None:
        self._c.execute(q.REMEMBER_IDEMPOTENCY, (key, now))

    def gcra_bucket(self, name: str) -> Bucket | None:
        row = self._c.execute(q.GCRA_BUCKET, (name,)).fetchone()
        return None if row is None else Bucket(float(row[0]), row[1])

    def set_gcra_bucket(self, name: str, bucket: Bucket) -> None:
        self._c.execute(q.SET_GCRA_BUCKET, (name, bucket.tat, bucket.decided_at))

    def active_singleton_runs(self, key: str) -> list[str]:
        rows = self._c.execute(q.ACTIVE_SINGLETON_RUNS, (key,))
        return [r[0] for r in rows if not self._ended_here(r[0])]

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
    def savepoint(self) -> AbstractContextManager[Any]:
        optimistic = self._optimistic
        if optimistic is not None:
            return optimistic
        return JobSavepoint(self._c, self._opened, self._forget_reads)

    def flush_deferrals(self, now: float) -> list[IngestResult]:
        with self._savepoint() as c:
            rows = [_deferral(r) for r in c.execute(q.DUE_DEFERRALS, (now,)).fetchall()]
            return flush_due(self, rows, now)

    def sync_crons(self, functions: FunctionSet, schedules: Sequence[CronRow]) -> None:
        with self._savepoint() as c:
            self.adopt_unowned(functions)
            app, ids = functions.app_id, dumps(list(functions.function_ids)).decode()
            wanted = {(r.function_id, r.cron) for r in schedules}
            for fn, cron in c.execute(q.CRONS_OF, (app, ids)).fetchall():
                if (fn, cron) not in wanted:
                    c.execute(q.DELETE_CRON, (app, fn, cron))
            rows = [(r.function_id, r.cron, r.next_at, app) for r in schedules]
            c.executemany(q.INSERT_CRON, rows)

    def due_crons(self, now: float, functions: FunctionSet) -> list[CronRow]:
        ids = dumps(list(functions.function_ids)).decode()
        rows = self._c.execute(q.DUE_CRONS, (now, functions.app_id, ids))
        return [CronRow(*r) for r in rows]

    def advance_cron(self, row: CronRow, next_at: float) -> bool:
        cursor = self._c.execute(
            q.ADVANCE_CRON, (next_at, row.app_id, row.function_id, row.cron, row.next_at)
        )
        return cursor.rowcount == 1

    def adopt_unowned(self, functions: FunctionSet) -> int:
        with self._savepoint() as c:
            app, ids = functions.app_id, dumps(list(functions.function_ids)).decode()
            c.execute(q.ADOPT_QUEUE, (app, ids))
            adopted = c.execute(q.ADOPT_RUNS, (app, ids)).rowcount
            c.execute(q.ADOPT_CRONS, (app, ids))
            c.execute(q.DROP_UNOWNED_CRONS, (ids,))
            c.execute(q.ADOPT_PAUSES, (app, ids))
            c.execute(q.DROP_UNOWNED_PAUSES, (ids,))
            return adopted

    # -- workers ----------------------------------------------------------------------------------
    def register_worker(self, worker: WorkerRecord) -> None:
        with self._savepoint() as c:
            c.execute(q.DELETE_WORKER_FUNCTIONS, (worker.worker_id,))
            c.execute(
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
            c.executemany(
                q.INSERT_WORKER_FUNCTION,
                [(f, worker.app_id, worker.worker_id) for f in worker.function_ids],
            )

    def touch_worker(self, worker_id: str, now: float, expires_at: float) -> None:
        self._c.execute(q.TOUCH_WORKER, (now, expires_at, worker_id))

    def unregister_worker(self, worker_id: str) -> None:
        with self._savepoint() as c:
            c.execute(q.DELETE_WORKER_FUNCTIONS, (worker_id,))
            c.execute(q.DELETE_WORKER, (worker_id,))

    def purge_expired(self, now: float, limit: int = 10_000) -> int:
        with self._savepoint() as c:
            horizon = now - IDEMPOTENCY_WINDOW
            count = c.execute(q.PURGE_SENDER_IDS, (horizon, limit)).rowcount
            count += c.execute(q.PURGE_IDEMPOTENCY, (horizon, limit)).rowcount
            c.execute(q.PURGE_WORKERS, (horizon,))
            count += c.execute(q.PURGE_WORKER_ROWS, (horizon,)).rowcount
            return count + c.execute(q.PURGE_GCRA, (now, limit)).rowcount

    def purge_before(self, cutoff: float, limit: int) -> Purged:
        with self._savepoint() as c:
            kept = _derived.purge(c, cutoff, limit)  # announcements kept as a row, before runs
            run_ids = [r[0] for r in c.execute(q.ENDED_BEFORE, (cutoff, limit))]
            for statement in (
                q.DELETE_STEPS_OF_RUN,
                q.DELETE_HISTORY_OF_RUN,
                q.DELETE_RUN_EVENTS_OF_RUN,
                q.DELETE_RUN,
            ):
                c.executemany(statement, [(r,) for r in run_ids])
            c.execute(q.PURGE_INBOX, (cutoff, limit))
            events = c.execute(q.PURGE_EVENTS, (cutoff, limit)).rowcount
            events += kept
            skips = c.execute(q.PURGE_SKIPS, (cutoff, limit)).rowcount
            return Purged(len(run_ids), events, skips)

    def put_sdk_app(self, app_id: str, name: str, registration: bytes, now: float) -> None:
        self._c.execute(q.PUT_SDK_APP, (app_id, name, bytes(registration), now))

    def set_paused(self, function_id: str, paused: bool, app_id: str = "") -> None:
        if paused:
            self._c.execute(q.PAUSE, (app_id, function_id))
        elif app_id:
            self._c.execute(q.RESUME, (app_id, function_id))
        else:
            self._c.execute(q.RESUME_EVERY_APP, (function_id,))

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
            c.execute(q.INSERT_HISTORY, (*history, dumps({"of": run_id}).decode(), None))
            return True

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
        """Lease due runs of ``functions`` in the fair order (``_fair_order``), skipping paused
        functions and full concurrency keys (the live leases are few, so they are counted
        first). Each served function is read through its own index ranges: its oldest due runs
        (``DUE_ARM``, cut at a window) and the oldest due run of each of a bounded number of its
        concurrency-key groups (``GROUP_HEADS``, rotating): runs of other apps and functions,
        and a backlog past the window, are never read."""
        horizon = now if due_by is None else max(now, due_by)
        token = secrets.token_hex(8)
        taken: list[str] = []
        with self._savepoint() as c:
            busy: Counter[str] = Counter()
            limits: dict[str, int] = {}
            live: list[tuple[str, str]] = []
            for function_id, key1, limit1, key2, limit2 in c.execute(q.LIVE_LEASES, (now,)):
                slots = _slots(key1, limit1, key2, limit2)
                live.append((function_id, group_of(slots)))
                for key, cap in slots:
                    busy[key] += 1
                    limits[key] = cap
            full = dumps([k for k, n in busy.items() if n >= limits[k]]).decode()
            window = limit * 4 + 16
            visits = max(limit, GROUP_VISITS)
            candidates: list[Candidate] = []
            served = unpaused(c, functions)
            for app_id in app_ids(c, functions):
                for chunk in chunks(served):
                    arms = " UNION ALL ".join(q.DUE_ARM.format(n=i + 6) for i in range(len(chunk)))
                    params = (now, full, window, app_id, horizon, *chunk)
                    # (a run without keys, most of them: no slots to make)
                    found = [
                        Candidate(
                            r[0],
                            r[1],
                            r[7],
                            () if r[2] is None and r[4] is None else _slots(*r[2:6]),
                            r[6],
                        )
                        for r in c.execute(arms, params)
                    ]
                    candidates += found
                    # a function with more due runs than the window: its groups' oldest too
                    unleased = Counter(run.function_id for run in found if run.held_by is None)
                    for function_id in chunk:
                        if unleased[function_id] >= window:
                            candidates += self._group_heads(app_id, function_id, horizon, visits)
            previous = {run.run_id: run.held_by for run in candidates}
            due = {run.run_id: run.due_at for run in candidates if run.due_at > now}
            picked = fair_pick(candidates, live, busy, limit)
            functions_of = {run.run_id: run.function_id for run in picked}
            taken = [run.run_id for run in picked]
            if not taken:
                return []
            # the run primitives it also uses are _SQLiteTx's
            taken = fail_spent(cast(LeasePrimitives, self), taken, now, max_passes, failed)
            app = functions.app_id
            c.executemany(q.TAKE_LEASE, [(owner, token, now + ttl, app, r) for r in taken])
            c.executemany(q.RECORD_RUN_STARTED, [(now, owner, r, now) for r in taken])
            c.executemany(q.MARK_LEASED, [(owner, now, now, app, r) for r in taken])
        return [
            Lease(r, token, previous[r], due.get(r), function_id=functions_of[r]) for r in taken
        ]

    def load_leased(self, leases: Sequence[Lease]) -> list[Lease]:
        """``LoadsLeased``: each run as this transaction reads it (``load_run``'s statements)."""
        loaded: list[Lease] = []
        for lease in leases:
            try:
                state = load_state(self._c, lease.run_id)
            except sqlite3.Error:
                raise
            except Exception:  # undecodable: its pass reads it again and fails the attempt
                loaded.append(lease)
                continue
            held = partial(_same, state)  # (not dataclasses.replace: ~160 bytecodes a lease)
            loaded.append(
                Lease(
                    lease.run_id,
                    lease.token,
                    lease.taken_over_from,
                    lease.due_at,
                    held,
                    lease.function_id,
                )
            )
        return loaded

    def _group_heads(
        self, app_id: str, function_id: str, now: float, visits: int
    ) -> list[Candidate]:
        """The oldest due run of up to ``visits`` concurrency-key groups of one function,
        starting after the group where the previous call stopped and wrapping around once."""
        cursors = self._group_cursors
        start = cursors.get((app_id, function_id), "")
        params = (app_id, function_id, start, visits, now)
        rows = self._c.execute(q.GROUP_HEADS, params).fetchall()
        if len(rows) < visits and start:  # the end of the groups: on from the first
            more = (app_id, function_id, "", visits - len(rows), now)
            rows += [r for r in self._c.execute(q.GROUP_HEADS, more) if r[0] <= start]
        if rows:
            cursors[app_id, function_id] = rows[-1][0]
        return [
            Candidate(r[1], r[2], function_id, _slots(*r[3:7])) for r in rows if r[1] is not None
        ]

    def spent_runs(self, run_ids: Sequence[str], max_passes: int) -> list[SpentRun]:
        rows = self._c.execute(q.PASSES_SPENT, (dumps(list(run_ids)).decode(), max_passes))
        return [SpentRun(*r) for r in rows]

    def fail_run(self, run_id: str, error: dict[str, Any], now: float) -> None:
        self._c.execute(q.FAIL_RUN, (dumps(error).decode(), now, run_id))

    def mark_steps_running(
        self, run_id: str, lease_token: str, steps: Sequence[StepRecord]
    ) -> bool:
        with self._savepoint() as c:
            row = c.execute(q.LEASE_TOKEN, (run_id,)).fetchone()
            if row is None or row[0] != lease_token:
                return False
            c.executemany(
                q.MARK_STEP_RUNNING,
                [
                    (run_id, s.hash, s.step_id, s.kind, s.position, s.attempts, s.started_at)
                    for s in steps
                ],
            )
            return True


def _slots(
    key1: str | None, limit1: int | None, key2: str | None, limit2: int | None
) -> tuple[tuple[str, int], ...]:
    """A queue row's concurrency slots, (key, limit) each."""
    pairs = ((key1, limit1), (key2, limit2))
    return tuple((k, n) for k, n in pairs if k is not None and n is not None)


def _deferral(r: Sequence[Any]) -> DeferralRow:
    return DeferralRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], new_run_from_dict(loads(r[6])))


def _same(state: RunState | None) -> RunState | None:
    return state
