"""Record builders and one-verb-one-transaction shortcuts for the Store contract suite.

Times are fixed epoch seconds from ``T0``; no test reads the wall clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepline.expressions import load_match
from stepline.serde import dumps
from stepline.store import Store
from stepline.store.records import (
    EventIngest,
    EventRecord,
    FunctionSet,
    HistoryRecord,
    IngestResult,
    Lease,
    NewRun,
    PassCommit,
    RunEnd,
    StepRecord,
    WaitMatcher,
    WaitRecord,
)

T0 = 1_700_000_000.0
TTL = 30.0
DAY = 24 * 3600.0
# the functions the contract suite's workers serve (runs built here carry no app id)
SERVED = FunctionSet(
    "", ("fn", "f", "fa", "fb", "fn-a", "fn-b", "fn-child", "fn-pay", "fn-ship", "nobody")
)


def cel_matches(wait: WaitRecord, event: EventRecord) -> bool:
    """The engine's matcher: the wait's stored CEL expression against the incoming event."""
    return wait.expression is None or load_match(wait.expression).matches(event.payload())


class CountingMatcher:
    """``cel_matches`` that records which waits it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, wait: WaitRecord, event: EventRecord) -> bool:
        self.asked.append(wait.wait_id)
        return cel_matches(wait, event)


def event(
    internal_id: str,
    name: str = "order/created",
    data: dict[str, Any] | None = None,
    *,
    sender_id: str | None = None,
    ts: float = T0,
) -> EventRecord:
    return EventRecord(internal_id, name, data or {}, {}, sender_id, ts)


def trigger(run_id: str, function_id: str = "fn", event_id: str | None = None) -> EventIngest:
    """An event that starts one run ``run_id`` (the event's id is ``ev-<run_id>``)."""
    event_id = event_id or f"ev-{run_id}"
    return EventIngest(event(event_id), (NewRun(run_id, function_id, (event_id,)),))


def ingest(
    store: Store, *items: EventIngest, now: float = T0, matcher: WaitMatcher = cel_matches
) -> list[IngestResult]:
    with store.transaction() as tx:
        return tx.ingest(items, now, matcher)


def start(store: Store, *run_ids: str, now: float = T0, function_id: str = "fn") -> None:
    """Create queued runs (due at ``now``), one triggering event each."""
    ingest(store, *(trigger(r, function_id) for r in run_ids), now=now)


def lease(
    store: Store,
    owner: str = "w1",
    now: float = T0,
    limit: int = 100,
    ttl: float = TTL,
    functions: FunctionSet = SERVED,
) -> list[Lease]:
    with store.transaction() as tx:
        return tx.lease_due(owner, now, limit, ttl, functions)


def lease_run(store: Store, run_id: str, owner: str = "w1", now: float = T0) -> Lease:
    """Lease every due run and return the lease of ``run_id`` (which must be among them)."""
    found = {held.run_id: held for held in lease(store, owner, now)}
    assert run_id in found, f"{run_id} was not due at {now}"
    return found[run_id]


def heartbeat(
    store: Store, owner: str, run_ids: Sequence[str], now: float, ttl: float = TTL
) -> list[str]:
    with store.transaction() as tx:
        return tx.heartbeat(owner, run_ids, now, ttl)


def commit(
    store: Store, pass_commit: PassCommit, now: float = T0, matcher: WaitMatcher = cel_matches
) -> list[IngestResult] | None:
    with store.transaction() as tx:
        return tx.commit_pass(pass_commit, now, matcher)


def step(
    run_id: str,
    digest: str,
    position: int,
    status: str = "COMPLETED",
    output: Any = None,
    *,
    kind: str = "run",
    due_at: float | None = None,
) -> StepRecord:
    output_json = dumps(output) if status == "COMPLETED" else None
    return StepRecord(
        run_id, digest, f"step-{digest}", kind, position, status, output_json, due_at=due_at
    )


def wait(
    run_id: str,
    wait_id: str,
    expression: str | None,
    *,
    event_name: str = "payment/received",
    step_hash: str = "h-wait",
    expires_at: float | None = None,
    created_at: float = T0,
) -> WaitRecord:
    """A wait indexed the way the engine indexes it (the expression's first equality key)."""
    keys = load_match(expression).index_keys if expression is not None else ()
    path, value = keys[0] if keys else (None, None)
    return WaitRecord(
        wait_id, run_id, step_hash, event_name, expression, path, value, expires_at, created_at
    )


def suspend_on_wait(
    store: Store, held: Lease, pending: WaitRecord, now: float = T0, until: float | None = None
) -> None:
    """Commit a pass that stores ``pending`` (with its PENDING step) and suspends WAITING."""
    commit(
        store,
        PassCommit(
            held.run_id,
            held.token,
            steps=[step(held.run_id, pending.step_hash, 0, "PENDING", kind="wait")],
            waits=[pending],
            end=RunEnd("WAITING", due_at=until),
        ),
        now,
    )


def history_kinds(store: Store, run_id: str) -> list[str]:
    return [h.kind for h in store.get_history(run_id)]


def history(run_id: str, kind: str, ts: float = T0, **data: Any) -> HistoryRecord:
    return HistoryRecord(run_id, ts, kind, data=data or None)
