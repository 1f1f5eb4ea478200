"""The PostgreSQL transaction's admission state (``FlowState``, ``DeferralState``,
``AdmissionTx``; ``PostgresTx`` binds them): new runs, skips, and the flow-control rows read
after a transaction-level advisory lock on their name (idempotency keys, GCRA buckets,
singleton keys, debounce and batch rows), held until commit: the next transaction deciding on
the same name waits, then reads what this one wrote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from stepline._ids import new_id
from stepline.gcra import Bucket
from stepline.serde import dumps
from stepline.store import _rows as shapes
from stepline.store._admission_rules import (
    IDEMPOTENCY_WINDOW,
    DeferralRow,
    flush_due,
    new_run_to_dict,
)
from stepline.store.postgres import _rows
from stepline.store.postgres import queries as q
from stepline.store.records import (
    IngestResult,
    NewRun,
)

if TYPE_CHECKING:
    from stepline.store.postgres.tx import PostgresTx

_HINT_FOR = 1.0  # seconds a found due deferral keeps optimistic transactions reading them


def record_skip(tx: PostgresTx, event_id: str, function_id: str, reason: str, now: float) -> None:
    tx._s.write(q.INSERT_SKIP, (event_id, function_id, reason, now), "skips")


def add_event_effects(tx: PostgresTx, effects: Sequence[tuple[str, str, str]]) -> None:
    tx._s.write_many(q.INSERT_EVENT_EFFECT, effects)


def create_run(tx: PostgresTx, new_run: NewRun, now: float, due_at: float | None = None) -> None:
    if (due_at is None or due_at <= now) and not new_run.admission.concurrency:
        tx.new_runs[new_run.run_id] = new_run.function_id
        tx.created[new_run.run_id] = (new_run, now, now if due_at is None else due_at)
    else:
        tx.made_work = True  # a run due later (a worker's next due time moved) or keyed
    s = tx._s
    s.write(
        q.CREATE_RUN,
        (
            *shapes.run_params(new_run, now),
            *shapes.queue_params(new_run, now, due_at),
            *shapes.queued_history_params(new_run.run_id, now),
        ),
    )
    for spec in new_run.admission.cancel_on:
        s.write(q.INSERT_MATCHER, shapes.matcher_params(new_run.run_id, spec, now, new_id(now)))
        if spec.index_path is None:
            tx._index.added_unindexed(q.MATCHERS_UNINDEXED, spec.event_name)
        else:
            tx._index.add_indexed_path(
                q.INSERT_MATCHER_PATH, q.MATCHER_PATHS, spec.event_name, spec.index_path
            )


def idempotency_seen(tx: PostgresTx, key: str, now: float) -> bool:
    tx._lock(f"idempotency\x1f{key}")
    row = tx._s.run(q.IDEMPOTENCY_SEEN, (key,)).fetchone()
    return row is not None and row[0] > now - IDEMPOTENCY_WINDOW


def remember_idempotency(tx: PostgresTx, key: str, now: float) -> None:
    tx._lock(f"idempotency\x1f{key}")
    tx._s.write(q.REMEMBER_IDEMPOTENCY, (key, now))


def gcra_bucket(tx: PostgresTx, name: str) -> Bucket | None:
    tx._lock(f"gcra\x1f{name}")
    row = tx._s.run(q.GCRA_BUCKET, (name,)).fetchone()
    return None if row is None else Bucket(float(row[0]), row[1])


def set_gcra_bucket(tx: PostgresTx, name: str, bucket: Bucket) -> None:
    tx._lock(f"gcra\x1f{name}")
    tx._s.write(q.SET_GCRA_BUCKET, (name, bucket.tat, bucket.decided_at))


def active_singleton_runs(tx: PostgresTx, key: str) -> list[str]:
    tx._lock(f"singleton\x1f{key}")
    return [r[0] for r in tx._s.run(q.ACTIVE_SINGLETON_RUNS, (key,))]


def get_deferral(tx: PostgresTx, kind: str, function_id: str, key: str) -> DeferralRow | None:
    tx._lock(f"deferral\x1f{kind}\x1f{function_id}\x1f{key}")
    row = tx._s.run(q.GET_DEFERRAL, (kind, function_id, key)).fetchone()
    return None if row is None else _rows.deferral(row)


def put_deferral(tx: PostgresTx, row: DeferralRow) -> None:
    tx.made_work = True
    tx._s.write(
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


def delete_deferral(tx: PostgresTx, row: DeferralRow) -> None:
    tx._s.write(q.DELETE_DEFERRAL, (row.kind, row.function_id, row.key))


def flush_deferrals(tx: PostgresTx, now: float) -> list[IngestResult]:
    hints = tx._hints
    if tx._s.optimistic and now - hints.deferrals_due_at > _HINT_FOR:
        # none due (the usual case), or the server fails the transaction
        tx._s.write(q.NONE_DUE_DEFERRALS, (now,))
        return []
    with tx._savepoint(durable=False) as s:
        due: list[DeferralRow] = []
        found_due = s.run(q.DUE_DEFERRALS, (now,)).fetchall()
        if found_due:  # the next optimistic transactions read them too, for a while
            hints.deferrals_due_at = now
        for found in found_due:
            row = _rows.deferral(found)
            name = f"deferral\x1f{row.kind}\x1f{row.function_id}\x1f{row.key}"
            # another transaction deciding on this debounce or batch (an event joining it,
            # another worker flushing it): leave it to that one, it is still due after
            if name not in tx._locked:
                got = s.run(q.TRY_LOCK_KEY, (name,)).fetchone()
                if not (got and got[0]):
                    continue
                tx._locked.add(name)
            again = s.run(q.GET_DEFERRAL, (row.kind, row.function_id, row.key)).fetchone()
            if again is not None and again[5] <= now:  # still there and due, as committed
                due.append(_rows.deferral(again))
        return flush_due(tx, due, now)
