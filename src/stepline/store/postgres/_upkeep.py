"""The PostgreSQL transaction's verbs that keep the database (``PostgresTx`` binds them):
schedules (a cron tick decided by a compare-and-set on ``next_at``), adoption of rows recorded
without an app, workers, retention purges (bounded batches, rows another transaction holds
skipped), Inngest SDK apps, pauses, replays. Each runs in the transaction's savepoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stepline.serde import dumps
from stepline.store._admission_rules import (
    IDEMPOTENCY_WINDOW,
)
from stepline.store.postgres import _read_queries as rq
from stepline.store.postgres import _upkeep_queries as uq
from stepline.store.postgres import queries as q
from stepline.store.records import (
    CronRow,
    FunctionSet,
    NewRun,
    Purged,
    WorkerRecord,
)

if TYPE_CHECKING:
    from stepline.store.postgres.tx import PostgresTx


def sync_crons(tx: PostgresTx, functions: FunctionSet, schedules: Sequence[CronRow]) -> None:
    tx.made_work = True
    with tx._savepoint() as s:
        tx.adopt_unowned(functions)
        app, ids = functions.app_id, list(functions.function_ids)
        wanted = {(r.function_id, r.cron) for r in schedules}
        for fn, cron in s.run(uq.CRONS_OF, (app, ids)).fetchall():
            if (fn, cron) not in wanted:
                s.write(uq.DELETE_CRON, (app, fn, cron))
        for r in schedules:
            s.write(uq.INSERT_CRON, (r.function_id, r.cron, r.next_at, app))


def due_crons(tx: PostgresTx, now: float, functions: FunctionSet) -> list[CronRow]:
    with tx._savepoint(durable=False) as s:
        rows = s.run(uq.DUE_CRONS, (now, functions.app_id, list(functions.function_ids)))
        return [CronRow(*r) for r in rows]


def advance_cron(tx: PostgresTx, row: CronRow, next_at: float) -> bool:
    with tx._savepoint() as s:
        cursor = s.run(
            uq.ADVANCE_CRON, (next_at, row.app_id, row.function_id, row.cron, row.next_at)
        )
        return cursor.rowcount == 1


def adopt_unowned(tx: PostgresTx, functions: FunctionSet) -> int:
    with tx._savepoint() as s:
        app, ids = functions.app_id, list(functions.function_ids)
        s.write(uq.ADOPT_QUEUE, (app, ids))
        adopted = s.run(uq.ADOPT_RUNS, (app, ids)).rowcount
        s.write(uq.ADOPT_CRONS, {"app": app, "fns": ids})
        s.write(uq.DROP_UNOWNED_CRONS, (ids,))
        s.write(uq.ADOPT_PAUSES, {"app": app, "fns": ids})
        s.write(uq.DROP_UNOWNED_PAUSES, (ids,))
        return adopted


def register_worker(tx: PostgresTx, worker: WorkerRecord) -> None:
    with tx._savepoint() as s:
        s.write(uq.DELETE_WORKER_FUNCTIONS, (worker.worker_id,))
        s.write(
            uq.REGISTER_WORKER,
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
        s.write_many(uq.INSERT_WORKER_FUNCTION, rows)


def touch_worker(tx: PostgresTx, worker_id: str, now: float, expires_at: float) -> None:
    with tx._savepoint(durable=False) as s:
        s.write(uq.TOUCH_WORKER, (now, expires_at, worker_id))


def unregister_worker(tx: PostgresTx, worker_id: str) -> None:
    with tx._savepoint() as s:
        s.write(uq.DELETE_WORKER_FUNCTIONS, (worker_id,))
        s.write(uq.DELETE_WORKER, (worker_id,))


def purge_expired(tx: PostgresTx, now: float, limit: int = 10_000) -> int:
    with tx._savepoint() as s:
        horizon = now - IDEMPOTENCY_WINDOW
        count = s.run(uq.PURGE_SENDER_IDS, (horizon, limit)).rowcount
        count += s.run(uq.PURGE_IDEMPOTENCY, (horizon, limit)).rowcount
        s.write(uq.PURGE_WORKERS, (horizon,))
        count += s.run(uq.PURGE_WORKER_ROWS, (horizon,)).rowcount
        return count + s.run(uq.PURGE_GCRA, (now, limit)).rowcount


def purge_before(tx: PostgresTx, cutoff: float, limit: int) -> Purged:
    with tx._savepoint() as s:
        run_ids = [r[0] for r in s.run(uq.ENDED_BEFORE, (cutoff, limit))]
        if run_ids:
            for statement in (
                uq.DELETE_STEPS_OF_RUNS,
                uq.DELETE_HISTORY_OF_RUNS,
                uq.DELETE_RUN_EVENTS_OF_RUNS,
                uq.DELETE_RUNS,
            ):
                s.write(statement, (run_ids,))
        s.write(uq.PURGE_INBOX, (cutoff, limit))
        events = s.run(uq.PURGE_EVENTS, (cutoff, limit)).rowcount
        skips = s.run(uq.PURGE_SKIPS, (cutoff, limit)).rowcount
        return Purged(len(run_ids), events, skips)


def put_sdk_app(tx: PostgresTx, app_id: str, name: str, registration: bytes, now: float) -> None:
    with tx._savepoint() as s:
        s.write(uq.PUT_SDK_APP, (app_id, name, bytes(registration), now))


def set_paused(tx: PostgresTx, function_id: str, paused: bool, app_id: str = "") -> None:
    tx.made_work = True
    with tx._savepoint() as s:
        if paused:
            s.write(uq.PAUSE, (app_id, function_id))
        elif app_id:
            s.write(uq.RESUME, (app_id, function_id))
        else:
            s.write(uq.RESUME_EVERY_APP, (function_id,))


def replay_run(
    tx: PostgresTx, run_id: str, new_run: NewRun, before_position: int | None, now: float
) -> bool:
    with tx._savepoint() as s:
        if s.run(rq.SELECT_RUN, (run_id,)).fetchone() is None:
            return False
        tx.create_run(new_run, now)
        if before_position is not None:
            s.write(uq.COPY_STEPS, (new_run.run_id, run_id, before_position))
        data = dumps({"of": run_id}).decode()
        s.write(
            q.INSERT_HISTORY,
            (new_run.run_id, now, "RUN_REPLAYED", None, None, None, data, None),
        )
        return True
