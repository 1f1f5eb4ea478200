"""The ingestions that ran beside a take of inbox rows (PostgreSQL; docs/design.md, "Handing
over"): a cancel event committed while a take started runs with ``cancel_on`` was matched by
neither (its ingestion did not see the take's uncommitted cancel matchers; the take's check
did not see the uncommitted event). Such an event is noted by its ingestion
(``NOTE_UNLESS_SHARED``), and its cancel matching is made again here, once the take ended:
against the cancel matchers created before the event was received, as ingesting it would
have had they existed, with fresh reads (never what the transaction remembers of the index,
which may predate the take's commit).

The take's own verbs are here too (``take_inbox``, ``events_received``: its buckets tried
exclusive, its gates closed when refused, ``_take_gates.py``), and the ingestion's try of its
events' buckets (``note_unless_shared``); ``tx.py``'s verbs call them."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stepline.expressions import value_at
from stepline.store import _rows as shapes
from stepline.store.postgres import queries as q
from stepline.store.postgres._arrays import Int4Array, TextArray
from stepline.store.records import (
    EventIngest,
    EventRecord,
    FunctionSet,
    InboxItem,
    IngestResult,
    TakeContended,
    WaitMatcher,
    WaitRecord,
)

if TYPE_CHECKING:
    from stepline.store.postgres.tx import PostgresTx

BUCKETS = 64  # event names are ordered in 64 buckets: a transaction holds at most 64 locks


def bucket(name: str) -> int:
    """The advisory lock (second key, ``queries.CANCEL_LOCKS`` the first) of an event name."""
    return zlib.crc32(name.encode()) % BUCKETS


def buckets(names: Sequence[str]) -> list[int]:
    """The distinct buckets of these names, in order (a take tries them all)."""
    return sorted({bucket(name) for name in names})


LATE_CANCELS_EVERY = 10.0  # seconds between two looks at the notes with no hint of any
NOTES_AFTER_TAKE = 5.0  # seconds a take's process looks at the notes in every transaction
NOTES_BATCH = 100


def note_unless_shared(tx: PostgresTx, items: Sequence[EventIngest]) -> None:
    """Before any cancel matcher of these events is read: their name buckets tried shared,
    each event noted for ``late_cancels`` if a take holds its bucket (q.NOTE_UNLESS_SHARED;
    queued: no round trip)."""
    if len(items) == 1:  # (a send's one event: no comprehensions)
        event = items[0].event
        ids, names = TextArray((event.internal_id,)), Int4Array((bucket(event.name),))
    else:
        ids = TextArray([item.event.internal_id for item in items])
        names = Int4Array([bucket(item.event.name) for item in items])
    tx.statements.write(q.NOTE_UNLESS_SHARED, (ids, names))


def take_inbox(tx: PostgresTx, functions: FunctionSet, limit: int) -> Callable[[], list[InboxItem]]:
    """``StoreTx.take_inbox`` on PostgreSQL."""
    with tx._savepoint(durable=False) as s:
        # sent with the transaction's next round trip (the lease's, in a worker's job)
        later = s.read_later(q.TAKE_INBOX, (functions.app_id, list(functions.function_ids), limit))

    def taken() -> list[InboxItem]:
        if later.rows is None:
            tx.statements.flush()
        return [
            InboxItem(r[0], r[1], None if r[4] is None else shapes.event_record(r[4:]), r[3])
            for r in later.rows or ()
        ]

    return taken


def give_back(tx: PostgresTx, rows: Sequence[tuple[str, str, str]], received_at: float) -> None:
    """``StoreTx.give_back`` on PostgreSQL: ``deliver``'s rows, without a notification."""
    tx.statements.write_many(q.DELIVER, [(*row, received_at) for row in rows])


def events_received(
    tx: PostgresTx, names: Sequence[str], after: tuple[float, str], until: float
) -> list[tuple[float, EventRecord]]:
    """``StoreTx.events_received`` on PostgreSQL: ``TakeContended`` when an ingestion holds
    one of the names' buckets."""
    distinct = list(dict.fromkeys(names))
    # no upper bound: every ingestion that committed before the read ran without the
    # runs' matchers, whatever its sender's clock said (docs/design.md, "Handing over")
    params = (distinct, after[0], after[0], after[1])
    wanted = buckets(distinct)
    gates = tx._gates
    with tx._savepoint(durable=False) as s:
        # the names' buckets exclusive (tried: never waited for, which would hold up the
        # other commits of this transaction), then the read (its snapshot after them): no
        # ingestion holds one, and those after it note their events
        held, found = s.run_all([(q.TRY_TAKE_BUCKETS, (wanted,)), (q.EVENTS_RECEIVED, params)])
        if not held.fetchall()[0][0]:
            if gates is not None:  # new ingestions note their events: tried again,
                gates.close_gates(wanted)  # the take gets them (_take_gates.py)
            raise TakeContended(f"an ingestion of {distinct} is in flight")
        rows = found.fetchall()
        tx.hints.notes_until = until + NOTES_AFTER_TAKE
    if gates is not None:
        gates.open_gates(wanted)
    return [(row[0], shapes.event_record(row[1:])) for row in rows]


def late_cancels(tx: PostgresTx, now: float, wait_matches: WaitMatcher) -> list[IngestResult]:
    """``StoreTx.late_cancels`` on PostgreSQL (inside the verb's savepoint). Housekeeping
    calls it: the gates of this process's refused takes closed ``GATE_HOLD`` ago are opened
    here too, should their timer be lost (``_take_gates.py``; asked of the gates' thread)."""
    if tx._gates is not None:
        tx._gates.open_stale()
    s, hints = tx.statements, tx.hints
    if now < hints.notes_until or now - hints.notes_read_at >= LATE_CANCELS_EVERY:
        hints.notes_read_at = now
    else:
        return []
    rows = s.run(q.CANCEL_NOTES, (NOTES_BATCH,)).fetchall()
    if not rows:
        return []
    results: list[IngestResult] = []
    for row in rows:
        if row[1] is None:  # its event was purged: nothing to match
            continue
        event, received_at = shapes.event_record(row[2:]), float(row[1])
        cancelled: list[tuple[str, str]] = []
        reason = f"cancelled by event {event.name}"
        for matcher in _matchers_before(tx, event, received_at):
            if any(run_id == matcher.run_id for run_id, _ in cancelled):
                continue
            if wait_matches(matcher, event):
                function_id = tx.cancel_run(matcher.run_id, now, reason, event.internal_id)
                if function_id is not None:
                    cancelled.append((matcher.run_id, function_id))
        if cancelled:
            results.append(IngestResult(event.internal_id, False, (), (), (), tuple(cancelled)))
    s.write(q.DELETE_CANCEL_NOTES, ([row[0] for row in rows],))
    return results


def _matchers_before(tx: PostgresTx, event: EventRecord, received_at: float) -> list[WaitRecord]:
    """The cancel matchers of the event's name that existed when it was received (created
    then or before, not expired then), oldest first."""
    s = tx.statements
    reads: list[tuple[str, Any]] = [(q.MATCHERS_UNINDEXED, (event.name, received_at))]
    payload = event.payload()
    for (path,) in s.run(q.MATCHER_PATHS, (event.name,)).fetchall():
        value = value_at(payload, path)
        if value is not None:
            reads.append((q.MATCHERS_INDEXED, (event.name, path, [value], received_at)))
    found = [shapes.wait_record(r) for cursor in s.run_all(reads) for r in cursor.fetchall()]
    return sorted((m for m in found if m.created_at <= received_at), key=lambda m: m.created_at)
