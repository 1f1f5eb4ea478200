"""Housekeeping, a part of a worker's lease job (``Engine.housekeeping``): what became due
without a run to lease yet (debounces, batches, cron ticks), the runs not started by their
start deadline, and the purges of expired state and old runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stepline._ids import new_id
from stepline.cron import catch_up_tick
from stepline.engine._system_events import not_started_reason
from stepline.engine.admission import plan_run
from stepline.sdk.triggers import CRON_EVENT
from stepline.store.interface import StoreTx
from stepline.store.records import CronRow, Deferral, EventIngest, EventRecord, IngestResult, NewRun

if TYPE_CHECKING:
    from stepline.engine.engine import Engine

OVERDUE_BATCH = 100  # runs past their start deadline cancelled per housekeeping round
PURGE_EVERY = 3600.0  # seconds between purges of expired state (and of old runs, with retention)
# rows of each kind one purge deletes: a small transaction; a full batch goes on next round
PURGE_BATCH = 1_000
# resolved waits whose rows a store kept (SQLite: ``purge_resolved_waits``) are deleted this
# often, this many at a time: a batch of deletes rewrites each page of the waits' index once
# for the many waits it holds, where deleting each as it was resolved rewrote one per wait
WAIT_PURGE_EVERY = 10.0
WAIT_PURGE_BATCH = 5_000


def housekeeping(engine: Engine, tx: StoreTx, now: float) -> list[IngestResult]:
    """Start what became due without a run to lease yet: debounces, batches, cron ticks;
    cancel the runs not started by their start deadline (as Inngest's eager cancellation:
    a run held back by a full concurrency key, a throttle or a pause is cancelled at
    creation + ``timeouts.start`` even though no worker can lease it; ``overdue_more``
    says a full batch was cancelled, or of owed announcements made, so another round is due
    now). A cron tick fires once whatever the number of workers (``advance_cron`` is a
    compare-and-set), and ticks missed while no worker ran collapse into one catch-up.
    Returns what it ingested (the flushed deferrals' events with the runs they started,
    cron ticks' events, the announcements of runs these cancelled), for the change feed."""
    ingested: list[IngestResult] = []
    with tx.savepoint():
        if now >= engine.next_purge:
            more = tx.purge_expired(now, PURGE_BATCH) >= PURGE_BATCH
            if engine.retention is not None:
                purged = tx.purge_before(now - engine.retention, PURGE_BATCH)
                more = more or purged.full(PURGE_BATCH)
            # a full batch: the next round (another transaction) goes on; else in an hour
            engine.next_purge = now if more else now + PURGE_EVERY
        if now >= engine.next_wait_purge:
            more = tx.purge_resolved_waits(WAIT_PURGE_BATCH) >= WAIT_PURGE_BATCH
            engine.next_wait_purge = now if more else now + WAIT_PURGE_EVERY
        # only a function with a start timeout has runs to cancel: else the store is not asked
        overdue = (
            tx.overdue_starts(now, engine.served, OVERDUE_BATCH) if start_timed(engine) else []
        )
        for run_id, _, start_timeout in overdue:
            ingested += engine.cancel(tx, run_id, not_started_reason(start_timeout), now) or []
        # announcements senders owed (SQLite): a full batch made, the next round is due now
        owed, owed_more = engine.announce_owed(tx, now)
        ingested += owed
        engine.overdue_more = len(overdue) >= OVERDUE_BATCH or owed_more
        # events ingested beside a take of runs they cancel (PostgreSQL): matched again
        late = tx.late_cancels(now, engine.wait_matches)
        ingested += late + engine.announce_cancellations(tx, late, now)
        # a debounce's or batch's run may replace a singleton run: announced like ingestion's
        flushed = tx.flush_deferrals(now)
        ingested += flushed
        ingested += engine.announce_cancellations(tx, flushed, now)
        # a tick is fired only for a cron trigger of this code (below): without any, no
        # schedule row can start a run here, and the store is not asked
        scheduled = any(engine.functions[f].crons for f in engine.served.function_ids)
        for row in tx.due_crons(now, engine.served) if scheduled else ():
            fn = engine.functions[row.function_id]
            trigger = next((c for c in fn.crons if c.cron == row.cron), None)
            if trigger is None:
                continue
            instant = datetime.fromtimestamp(now, UTC)
            tick = catch_up_tick(
                trigger.schedule, datetime.fromtimestamp(row.next_at - 0.001, UTC), instant
            )
            next_at = trigger.schedule.next_after(instant).timestamp()
            if tick is None or not tx.advance_cron(row, next_at):
                continue
            at = tick.timestamp()
            record = EventRecord(new_id(at), CRON_EVENT, {"cron": trigger.cron}, {}, None, at)
            planned = plan_run(fn, engine.app_id, record.internal_id, record.payload(), now)
            runs = (planned,) if isinstance(planned, NewRun) else ()
            deferrals = (planned,) if isinstance(planned, Deferral) else ()
            results = tx.ingest([EventIngest(record, runs, deferrals)], now, engine.wait_matches)
            ingested += results
            ingested += engine.announce_cancellations(tx, results, now)
    return ingested


def cron_rows(engine: Engine, now: float) -> list[CronRow]:
    """Every cron trigger of the app with its next tick after ``now``."""
    instant = datetime.fromtimestamp(now, UTC)
    return [
        CronRow(
            fn.id, trigger.cron, trigger.schedule.next_after(instant).timestamp(), engine.app_id
        )
        for fn in engine.functions.values()
        for trigger in fn.crons
    ]


def start_timed(engine: Engine) -> bool:
    """Whether a function served here has a start timeout (``timeouts.start``)."""
    return any(
        (t := engine.functions[f].options.timeouts) is not None and t.start_seconds is not None
        for f in engine.served.function_ids
    )
