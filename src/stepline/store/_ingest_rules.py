"""The ingest order and the cancellation of a run, shared by every store backend.

One event is ingested in this order (DESIGN.md §7.7): it is stored and de-duplicated by sender
id; the runs whose cancel matchers it satisfies are cancelled; the waits it satisfies are
resolved; and, unless it is a duplicate (which still cancels and resumes, as in Inngest), its
runs and deferrals go through admission (``_admission_rules.start_runs``). The backend supplies
the primitives (``_primitives.EventPrimitives``) and runs these functions inside one verb.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Protocol

from stepline.expressions import value_at
from stepline.serde import dumps
from stepline.store._admission_rules import AdmissionTx, start_runs
from stepline.store._primitives import EventPrimitives, ResumedWait, RunPrimitives
from stepline.store.records import (
    INVOKED_CANCELLED,
    EventIngest,
    EventRecord,
    HistoryRecord,
    IngestResult,
    WaitMatcher,
    WaitRecord,
    Wake,
)

_CREATED_AT = attrgetter("created_at")


class IngestTx(EventPrimitives, AdmissionTx, Protocol):
    """A backend transaction as the ingest order uses it."""


def ingest(
    tx: IngestTx, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
) -> list[IngestResult]:
    """Ingest ``items`` in order (the ``StoreTx.ingest`` verb, inside the caller's verb).

    The effects of resolved waits are written in batches (``resume_waits``): before anything
    may cancel a run (so a run's WAIT_MATCHED precedes its RUN_CANCELLED) and at the end."""
    resumed: list[ResumedWait] = []
    results = [_ingest_one(tx, item, now, wait_matches, resumed) for item in items]
    if resumed:
        tx.resume_waits(resumed, now)
    return results


def _ingest_one(
    tx: IngestTx,
    item: EventIngest,
    now: float,
    wait_matches: WaitMatcher,
    resumed: list[ResumedWait],
) -> IngestResult:
    event = item.event
    duplicate = not tx.insert_event(event, now)
    # a duplicate id starts no run but still cancels and resumes, as in Inngest
    cancelled = _apply_cancel_matchers(tx, event, now, wait_matches, resumed)
    resumed_runs = _resolve_waits(tx, event, now, wait_matches, resumed)
    if duplicate:
        return IngestResult(event.internal_id, True, (), resumed_runs, (), tuple(cancelled))
    if resumed and (item.new_runs or item.deferrals):  # a singleton may cancel a resumed run
        tx.resume_waits(resumed, now)
        resumed.clear()
    started, skipped = start_runs(tx, item, now, cancelled)
    return IngestResult(event.internal_id, False, started, resumed_runs, skipped, tuple(cancelled))


def _candidates(
    event: EventRecord,
    unindexed: list[WaitRecord],
    paths: Sequence[str],
    indexed: _IndexedLookup,
) -> list[WaitRecord]:
    """The waits (or matchers) the index offers for ``event``, oldest first; the payload is
    only built when something of the name is indexed."""
    rows = unindexed
    if paths:
        payload = event.payload()
        for path in paths:
            value = value_at(payload, path)
            if value is not None:
                found = indexed(event.name, path, value)
                if found:
                    rows = rows + found if rows else found
    if len(rows) > 1:
        rows = sorted(rows, key=_CREATED_AT)
    return rows


class _IndexedLookup(Protocol):
    def __call__(self, event_name: str, path: str, value: str, /) -> list[WaitRecord]: ...


def _apply_cancel_matchers(
    tx: IngestTx,
    event: EventRecord,
    now: float,
    wait_matches: WaitMatcher,
    resumed: list[ResumedWait],
) -> list[tuple[str, str]]:
    name = event.name
    unindexed = tx.unindexed_matchers(name, now)
    paths = tx.matcher_paths(name)
    if not paths and not unindexed:
        return []  # no run can be cancelled by this name: no payload built

    def indexed(event_name: str, path: str, value: str) -> list[WaitRecord]:
        return tx.indexed_matchers(event_name, path, value, now)

    cancelled: list[tuple[str, str]] = []
    reason = f"cancelled by event {name}"
    for matcher in _candidates(event, unindexed, paths, indexed):
        if any(run_id == matcher.run_id for run_id, _ in cancelled):
            continue
        if not wait_matches(matcher, event):
            continue
        if resumed:  # a wait this verb resolved stays before the cancellation
            tx.resume_waits(resumed, now)
            resumed.clear()
        function_id = cancel(tx, matcher.run_id, now, reason)
        if function_id is not None:
            cancelled.append((matcher.run_id, function_id))
    return cancelled


def _resolve_waits(
    tx: IngestTx,
    event: EventRecord,
    now: float,
    wait_matches: WaitMatcher,
    resumed: list[ResumedWait],
) -> tuple[str, ...]:
    name = event.name
    unindexed = tx.unindexed_waits(name)
    paths = tx.wait_paths(name)
    if not paths and not unindexed:
        return ()  # nothing waits for this name: the common case, no payload built
    event_json: bytes | None = None
    runs: list[str] = []
    for wait in _candidates(event, unindexed, paths, tx.indexed_waits):
        if not wait_matches(wait, event) or not tx.delete_wait(wait.wait_id):
            continue
        if event_json is None:
            event_json = dumps(event.payload(), "event")
        resumed.append(ResumedWait(wait.run_id, wait.step_hash, event_json, event.internal_id))
        runs.append(wait.run_id)
    return tuple(runs)


def cancel(tx: RunPrimitives, run_id: str, now: float, reason: str) -> str | None:
    """Cancel a run that has not ended (the ``cancel_run`` verb, inside the caller's verb):
    CANCELLED, its queue item, waits and cancel matchers removed, RUN_CANCELLED in its history,
    and an invoking parent's step failed with ``function cancelled``. Returns the run's function
    id, or None if the run does not exist or has ended (nothing written)."""
    ended = tx.mark_cancelled(run_id, now, {"name": "Cancelled", "message": reason})
    if ended is None:
        return None
    tx.drop_run_work(run_id)
    tx.append_history([HistoryRecord(run_id, now, "RUN_CANCELLED", data={"reason": reason})], None)
    if ended.parent_run_id is not None and ended.parent_step_hash is not None:
        error = dict(INVOKED_CANCELLED)
        apply_wake(
            tx, Wake(ended.parent_run_id, ended.parent_step_hash, "FAILED", None, error), now
        )
    return ended.function_id


def apply_wake(tx: RunPrimitives, wake: Wake, now: float) -> None:
    """Settle a parent's pending step with its child's end, and make the parent due."""
    if tx.settle_pending_step(wake, now):
        tx.wake_run(wake.run_id, now)
