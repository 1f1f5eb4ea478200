"""Flow-control decisions shared by every store backend.

The algorithms live here once; each backend supplies the few reads and writes of state they need
(``FlowState``, ``DeferralState``) with its own storage, inside its own transaction, so two
processes on one database decide exactly (SQLite serializes writers; PostgreSQL locks rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from stepline.gcra import Bucket, GcraSpec, admit_or_reject, schedule
from stepline.store.records import (
    CANCELLED,
    RESUMED,
    Admission,
    Deferral,
    EventIngest,
    IngestResult,
    MatcherSpec,
    NewRun,
    Wake,
)

IDEMPOTENCY_WINDOW = 24 * 3600.0


class FlowState(Protocol):
    """Per-transaction access to the state admission decisions read and write."""

    def idempotency_seen(self, key: str, now: float) -> bool: ...

    def remember_idempotency(self, key: str, now: float) -> None: ...

    def gcra_bucket(self, name: str) -> Bucket | None: ...

    def set_gcra_bucket(self, name: str, bucket: Bucket) -> None: ...

    def active_singleton_runs(self, key: str) -> list[str]: ...


@dataclass
class Decision:
    """Whether to create a run, when it becomes due, and which runs it displaces."""

    skip: str | None = None
    due_at: float = 0.0
    cancel: list[str] = field(default_factory=list)


def decide(run: NewRun, now: float, state: FlowState) -> Decision:
    """Apply idempotency, rate limit, singleton, throttle and priority to a new run, in that
    order. Idempotency and the rate limit are written when they admit the run, the throttle
    only when the run is created."""
    a = run.admission
    # idempotency and the rate limit first, their places taken even when the singleton then
    # skips the run, as in Inngest (executor.go schedule(): the rate limit, which also carries
    # idempotency, before the singleton)
    reason = gate_event(a, now, state)
    if reason is not None:
        return Decision(skip=reason)
    active: list[str] = []
    if a.singleton_key is not None:
        active = state.active_singleton_runs(a.singleton_key)
        if active and a.singleton_mode == "skip":
            return Decision(skip="singleton")
    due = now - a.priority  # priority orders the runs that may start now
    if a.throttle is not None:
        start, bucket = schedule(a.throttle, state.gcra_bucket(a.throttle.bucket), now)
        state.set_gcra_bucket(a.throttle.bucket, bucket)
        if start is not None:  # delayed by the throttle: it starts then, whatever its priority
            due = start
    if a.not_before is not None and a.not_before > due:  # an event ts in the future
        due = a.not_before
    return Decision(due_at=due, cancel=active)


def gate_event(admission: Admission, now: float, state: FlowState) -> str | None:
    """Idempotency and rate limit for one incoming event of a debounced function, decided before
    the event enters the debounce (Inngest's executor.go checks the rate limit, which also
    carries ``idempotency``, before it debounces). Returns the skip reason, or None after
    taking the event's place in both."""
    key = admission.idempotency_key
    if key is not None and state.idempotency_seen(key, now):
        return "idempotency"
    limit, bucket = admission.rate_limit, None
    if limit is not None:
        bucket = admit_or_reject(limit, state.gcra_bucket(limit.bucket), now)
        if bucket is None:
            return "rate_limit"
    if key is not None:
        state.remember_idempotency(key, now)
    if limit is not None and bucket is not None:
        state.set_gcra_bucket(limit.bucket, bucket)
    return None


class AdmissionTx(FlowState, Protocol):
    """What ``admit`` and ``start_runs`` need of a backend's transaction."""

    def record_skip(self, event_id: str, function_id: str, reason: str, now: float) -> None: ...

    def cancel_run(self, run_id: str, now: float, reason: str) -> str | None: ...

    def create_run(self, new_run: NewRun, now: float, due_at: float | None = None) -> None: ...

    def add_event_effects(self, effects: Sequence[tuple[str, str, str]]) -> None:
        """Record (event id, run id, effect) rows for ``Store.event_runs`` (RESUMED and
        CANCELLED: ``create_run`` records STARTED for the run's events); a row already there
        is kept. Inserts only: exact."""
        ...

    def get_deferral(self, kind: str, function_id: str, key: str) -> DeferralRow | None: ...

    def put_deferral(self, row: DeferralRow) -> None: ...

    def delete_deferral(self, row: DeferralRow) -> None: ...


def admit(
    tx: AdmissionTx, new_run: NewRun, now: float, event_id: str, cancelled: list[tuple[str, str]]
) -> str | None:
    """Create a run if flow control admits it (cancelling the singleton runs it replaces, added
    to ``cancelled``); returns the skip reason otherwise, recorded as a skip."""
    decision = decide(new_run, now, tx)
    if decision.skip is not None:
        tx.record_skip(event_id, new_run.function_id, decision.skip, now)
        return decision.skip
    for run_id in decision.cancel:
        function_id = tx.cancel_run(run_id, now, "singleton: replaced by a newer run")
        if function_id is not None:
            cancelled.append((run_id, function_id))
    tx.create_run(new_run, now, decision.due_at)
    return None


# what the invoking step fails with when its child is not started. Inngest (runner.go Initialize)
# fails the invoker with "invoked function is rate limited" when the rate limit (which also
# carries ``idempotency``) refuses the run, and leaves it waiting on a singleton skip; Stepline
# fails it at once then too (docs/inngest.md).
INVOKE_SKIPPED = {
    "rate_limit": "invoked function is rate limited",
    "idempotency": "invoked function is rate limited",
    "singleton": "invoked function is skipped: a singleton run is active",
}


def start_child(tx: AdmissionTx, new_run: NewRun, now: float) -> tuple[IngestResult, Wake | None]:
    """Admit an invoked run as any run (idempotency, rate limit, singleton, throttle, priority,
    concurrency, ``cancel_on``, timeouts); when flow control skips it, the wake that fails the
    invoking step. The result carries the singleton runs it cancelled, to announce."""
    event_id = new_run.event_ids[0]
    cancelled: list[tuple[str, str]] = []
    reason = admit(tx, new_run, now, event_id, cancelled)
    if reason is None:
        result = IngestResult(event_id, False, (new_run.run_id,), (), (), tuple(cancelled))
        record_effects(tx, [result])
        return result, None
    wake = None
    if new_run.parent_run_id is not None and new_run.parent_step_hash is not None:
        error = {"name": "Error", "message": INVOKE_SKIPPED[reason]}
        wake = Wake(new_run.parent_run_id, new_run.parent_step_hash, "FAILED", None, error)
    return IngestResult(event_id, False, (), (), ((new_run.function_id, reason),)), wake


def start_runs(
    tx: AdmissionTx, item: EventIngest, now: float, cancelled: list[tuple[str, str]]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Start an event's runs and record its deferrals; returns (started run ids, skipped
    (function id, reason) pairs)."""
    runs = list(item.new_runs)
    skipped: list[tuple[str, str]] = []
    for deferral in item.deferrals:
        if deferral.kind == "debounce":
            a = deferral.run.admission
            reason = gate_event(a, now, tx)
            if reason is not None:
                tx.record_skip(item.event.internal_id, deferral.function_id, reason, now)
                skipped.append((deferral.function_id, reason))
                continue
            # decided for this event: the run the debounce starts is not limited again
            gated = replace(a, idempotency_key=None, rate_limit=None)
            deferral = replace(deferral, run=replace(deferral.run, admission=gated))
        ready = defer(deferral, item.event.internal_id, now, tx)
        if ready is not None:
            runs.append(ready)
    started: list[str] = []
    for new_run in runs:
        reason = admit(tx, new_run, now, item.event.internal_id, cancelled)
        if reason is None:
            started.append(new_run.run_id)
        else:
            skipped.append((new_run.function_id, reason))
    return tuple(started), tuple(skipped)


def flush_due(tx: AdmissionTx, rows: list[DeferralRow], now: float) -> list[IngestResult]:
    """Start the runs of due debounces and batches (rows already read by the backend); one
    result per row, under its last event's id: the run started (or the skip) and the runs
    its singleton cancelled, which the caller announces as it does for an ingested event."""
    results: list[IngestResult] = []
    for row in sorted(rows, key=lambda r: r.due_at):
        tx.delete_deferral(row)
        run, event_id = run_for(row), row.event_ids[-1]
        cancelled: list[tuple[str, str]] = []
        reason = admit(tx, run, now, event_id, cancelled)
        started = (run.run_id,) if reason is None else ()
        skipped = () if reason is None else ((run.function_id, reason),)
        results.append(IngestResult(event_id, False, started, (), skipped, tuple(cancelled)))
    record_effects(tx, results)
    return results


def record_effects(tx: AdmissionTx, results: Sequence[IngestResult]) -> None:
    """Record what these events did to runs besides starting them (``create_run`` records
    that): the runs each resumed and cancelled, in one write for them all — none at all when
    they did neither (the common case)."""
    effects: list[tuple[str, str, str]] = []
    add = effects.append  # a loop, not two comprehensions per event: each makes a function
    for r in results:
        resumed, cancelled = r.resumed_run_ids, r.cancelled
        if resumed or cancelled:
            event_id = r.internal_id
            for run_id in resumed:
                add((event_id, run_id, RESUMED))
            for run_id, _ in cancelled:
                add((event_id, run_id, CANCELLED))
    if effects:
        tx.add_event_effects(list(dict.fromkeys(effects)))


# -- deferrals (debounce, batch) ------------------------------------------------------------------
@dataclass
class DeferralRow:
    """A pending debounce or batch."""

    kind: str
    function_id: str
    key: str
    event_ids: list[str]
    first_at: float
    due_at: float
    run: NewRun


class DeferralState(Protocol):
    """Per-transaction access to pending debounces and batches."""

    def get_deferral(self, kind: str, function_id: str, key: str) -> DeferralRow | None: ...

    def put_deferral(self, row: DeferralRow) -> None: ...

    def delete_deferral(self, row: DeferralRow) -> None: ...


def defer(deferral: Deferral, event_id: str, now: float, state: DeferralState) -> NewRun | None:
    """Record an event in its debounce or batch; returns the run to start now (a full batch).
    Debounces and batches are per app: two apps' functions of the same id never share one."""
    if deferral.run.app_id:
        deferral = replace(deferral, key=f"{deferral.run.app_id}\x1f{deferral.key}")
    row = state.get_deferral(deferral.kind, deferral.function_id, deferral.key)
    if deferral.kind == "debounce":
        if row is None:
            row = DeferralRow(
                "debounce",
                deferral.function_id,
                deferral.key,
                [event_id],
                now,
                now + deferral.period,
                deferral.run,
            )
        else:
            due = now + deferral.period
            if deferral.timeout is not None:
                due = min(due, row.first_at + deferral.timeout)
            if due < row.due_at:  # an event older than the debounce's last (taken from an
                return None  # inbox, decided at its reception): superseded, as it would be
            row = replace(row, event_ids=[event_id], due_at=due, run=deferral.run)
        state.put_deferral(row)
        return None
    stored = row is not None
    if row is None:
        row = DeferralRow(
            "batch",
            deferral.function_id,
            deferral.key,
            [event_id],
            now,
            now + deferral.period,
            deferral.run,
        )
    else:
        row = replace(row, event_ids=[*row.event_ids, event_id])
    if len(row.event_ids) >= deferral.max_size:
        if stored:
            state.delete_deferral(row)
        return run_for(row)
    state.put_deferral(row)
    return None


def run_for(row: DeferralRow) -> NewRun:
    """The run a debounce or batch starts: its template with the collected events."""
    return replace(row.run, event_ids=tuple(row.event_ids))


# -- JSON forms for backends that store records as text -------------------------------------------
def new_run_to_dict(run: NewRun) -> dict[str, Any]:
    """A NewRun (with its admission) as plain JSON-able data."""
    a = run.admission
    return {
        "run_id": run.run_id,
        "function_id": run.function_id,
        "app_id": run.app_id,
        "event_ids": list(run.event_ids),
        "parent_run_id": run.parent_run_id,
        "parent_step_hash": run.parent_step_hash,
        "admission": {
            "idempotency_key": a.idempotency_key,
            "rate_limit": _gcra_dict(a.rate_limit),
            "throttle": _gcra_dict(a.throttle),
            "priority": a.priority,
            "singleton_key": a.singleton_key,
            "singleton_mode": a.singleton_mode,
            "concurrency": [list(c) for c in a.concurrency],
            "cancel_on": [
                [m.event_name, m.expression, m.index_path, m.index_value, m.timeout]
                for m in a.cancel_on
            ],
            "start_timeout": a.start_timeout,
            "finish_timeout": a.finish_timeout,
            "not_before": a.not_before,
        },
    }


def new_run_from_dict(data: dict[str, Any]) -> NewRun:
    """The inverse of ``new_run_to_dict``."""
    a = data["admission"]
    admission = Admission(
        idempotency_key=a["idempotency_key"],
        rate_limit=_gcra(a["rate_limit"]),
        throttle=_gcra(a["throttle"]),
        priority=a["priority"],
        singleton_key=a["singleton_key"],
        singleton_mode=a["singleton_mode"],
        concurrency=tuple((k, int(n)) for k, n in a["concurrency"]),
        cancel_on=tuple(MatcherSpec(*m) for m in a["cancel_on"]),
        start_timeout=a["start_timeout"],
        finish_timeout=a["finish_timeout"],
        not_before=a.get("not_before"),
    )
    return NewRun(
        data["run_id"],
        data["function_id"],
        tuple(data["event_ids"]),
        data["parent_run_id"],
        data["parent_step_hash"],
        admission,
        data.get("app_id", ""),  # "": recorded before runs carried their app
    )


def _gcra_dict(spec: GcraSpec | None) -> list[Any] | None:
    return None if spec is None else [spec.bucket, spec.limit, spec.period, spec.capacity]


def _gcra(data: list[Any] | None) -> GcraSpec | None:
    return None if data is None else GcraSpec(data[0], int(data[1]), float(data[2]), int(data[3]))
