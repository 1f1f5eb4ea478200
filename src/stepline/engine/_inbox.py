"""Taking the events other apps' senders handed to this app's functions (its inbox): a part of
a worker's lease job (``Engine.take_inbox``). Each taken event starts its runs with this app's
definitions, decided as of the event's reception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepline.errors import StoreUnavailable
from stepline.expressions import stored_matches
from stepline.sdk.function import FunctionDef
from stepline.store.interface import StoreTx
from stepline.store.records import (
    EventIngest,
    EventRecord,
    IngestResult,
    MatcherSpec,
    TakeContended,
)

if TYPE_CHECKING:
    from stepline.engine.engine import Engine


def take_inbox(engine: Engine, tx: StoreTx, limit: int) -> Callable[[], list[IngestResult]]:
    """A part of a worker's lease job: take up to ``limit`` events other apps' senders
    handed to this app's functions (``StoreTx.take_inbox``) and start their runs with
    this app's definitions (the ``if`` filter, keys, flow control: as for a direct send),
    decided as of each event's reception (``_admit_taken``). Returns the function that
    does it once the rows are there (call it before the transaction ends); it returns
    what starting them did."""
    pending = tx.take_inbox(engine.served, limit)

    def admit() -> list[IngestResult]:
        results: list[IngestResult] = []
        now = engine.clock.now()
        for taken in pending():
            fn = engine.functions.get(taken.function_id)
            if taken.event is None or fn is None:  # purged, or no longer here: dropped
                continue
            results += _admit_taken(engine, tx, taken.event, fn, taken.received_at, now)
        if not results:
            return []
        return results + engine.announce_cancellations(tx, results, now)

    return admit


def _admit_taken(
    engine: Engine, tx: StoreTx, event: EventRecord, fn: FunctionDef, received_at: float, now: float
) -> list[IngestResult]:
    """Start the run (or deferral) of one taken inbox row, in a savepoint of its own: as
    if at the event's reception (admission at ``received_at``), then cancelled by the
    events its ``cancel_on`` matches that were received after its event and before the
    take (they were ingested before its cancel matchers existed). A row whose planning or
    admission raises is recorded as a skip and dropped: it never fails the lease job
    (which would stop this app's workers from leasing anything)."""
    try:
        with tx.savepoint():
            item = engine.plan_for(event, [fn], None, received_at)
            if not (item.new_runs or item.deferrals):
                return []
            results = tx.admit_taken([item], received_at)
            cancels = _cancelled_since(tx, item, results, received_at, now)
    except TakeContended:  # an ingestion of its cancel events in flight: taken again soon
        tx.give_back([(engine.app_id, fn.id, event.internal_id)], received_at)
        # by this process's workers, woken here (the database wakes no worker for it)
        engine.wake_workers()
        return []
    except Exception as exc:
        if isinstance(engine.store.store_error(exc), StoreUnavailable):
            raise  # transient: the lease job fails and gives the row back
        engine.logger.error("event %s not started for %s: %r", event.internal_id, fn.id, exc)
        with tx.savepoint():
            tx.record_skip(event.internal_id, fn.id, f"error: {exc!r}"[:500], now)
        return [IngestResult(event.internal_id, False, (), (), ((fn.id, "error"),))]
    return results + cancels


def _cancelled_since(
    tx: StoreTx,
    item: EventIngest,
    results: list[IngestResult],
    received_at: float,
    now: float,
) -> list[IngestResult]:
    """Cancel the runs just started for a taken event whose cancel matchers an event
    received after it (by ``now`` on memory and SQLite; any committed, on PostgreSQL)
    satisfies, as ingesting that event would have had the run existed: one result per
    cancelling event (announced as any cancellation)."""
    started = {run_id for r in results for run_id in r.run_ids}
    runs = [run for run in item.new_runs if run.run_id in started and run.admission.cancel_on]
    if not runs:
        return []
    names = [spec.event_name for run in runs for spec in run.admission.cancel_on]
    later = tx.events_received(names, (received_at, item.event.internal_id), now)
    cancels: list[IngestResult] = []
    for run in runs:
        for at, event in later:
            if not any(_cancels(spec, event, received_at, at) for spec in run.admission.cancel_on):
                continue
            reason = f"cancelled by event {event.name}"
            if tx.cancel_run(run.run_id, now, reason, event.internal_id) is not None:
                pair = ((run.run_id, run.function_id),)
                cancels.append(IngestResult(event.internal_id, False, (), (), (), pair))
            break
    return cancels


def _cancels(spec: MatcherSpec, event: EventRecord, created_at: float, received_at: float) -> bool:
    """Whether a run's cancel matcher (created at ``created_at``) cancels it on ``event``."""
    if event.name != spec.event_name:
        return False
    if spec.timeout is not None and received_at > created_at + spec.timeout:
        return False
    return spec.expression is None or stored_matches(spec.expression, event.payload())
