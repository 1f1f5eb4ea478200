"""The events announcing the runs cancelled in a transaction (``_system_events``), made for many
runs at once: a batch of events that cancels a thousand runs announces them with one call.

When nothing hears them (no function of the app plans a run for them, and the store finds no
wait, cancel matcher or other app's function for their names: ``UnheardEvents``), they are
only stored: their data is made of the runs' trigger events as the store keeps them, encoded
(``cancelled_announcements``), with no decoding, planning or matching. Else, or with a store
without that verb, they are ingested as any event (``cancelled_events``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stepline._ids import new_ids
from stepline.engine._system_events import (
    cancelled_announcements,
    ending_data,
    ending_names,
)
from stepline.serde import dumps_exact
from stepline.store.interface import StoreTx, UnheardEvents
from stepline.store.records import EventIngest, EventRecord, FunctionSet, IngestResult


def cancelled_events(
    plan: Callable[[EventRecord], EventIngest],
    tx: StoreTx,
    cancelled: Sequence[tuple[str, str]],
    reason: str,
    now: float,
) -> list[EventIngest]:
    """``inngest/function.finished`` and ``inngest/function.cancelled`` for each run just
    cancelled in ``tx`` (``cancelled``: its run id and function id), in that order, planned by
    ``plan``: what ``Engine.ending_events`` makes for each run (the same data, encoded once a
    run), with the ids of them all made together (``new_ids``: the same increasing order)."""
    made: list[tuple[tuple[str, ...], dict[str, Any], bytes]] = []
    count = 0
    for run_id, function_id in cancelled:
        events = [e.payload() for e in tx.run_events(run_id)]
        names = ending_names("CANCELLED", events)
        if names:
            data = ending_data(function_id, run_id, events, "CANCELLED", reason=reason)
            made.append((names, data, dumps_exact(data)))
            count += len(names)
    ids = iter(new_ids(count, now))
    return [
        plan(EventRecord(next(ids), name, data, {}, None, now, encoded))
        for names, data, encoded in made
        for name in names
    ]


def store_unheard_announcements(
    tx: UnheardEvents,
    cancelled: Sequence[tuple[str, str]],
    reason: str,
    now: float,
    sender: FunctionSet | None,
    report: bool = True,
) -> list[IngestResult] | None:
    """The events ``cancelled_events`` makes (the same names, ids and data), stored by
    ``tx.store_unheard`` for ``sender``, whose functions plan no run for them; what ingesting
    them did (nothing but store them; none made unless ``report``). None, with nothing
    stored, when something may hear them: ``cancelled_events`` and ingest them then."""
    runs = tx.encoded_run_events([run_id for run_id, _ in cancelled])
    made = cancelled_announcements(cancelled, runs, reason)
    ids = iter(new_ids(sum(len(names) for names, _ in made), now))
    rows = [(next(ids), name, data) for names, data in made for name in names]
    if rows and not tx.store_unheard(rows, now, sender):
        return None
    if not report:
        return []
    return [IngestResult(internal_id, False, (), ()) for internal_id, _, _ in rows]
