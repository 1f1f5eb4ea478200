"""The events announcing the runs cancelled in a transaction (``_system_events``), made for many
runs at once: a batch of events that cancels a thousand runs announces them with one call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stepline._ids import new_ids
from stepline.engine._system_events import ending_data, ending_names
from stepline.serde import dumps_exact
from stepline.store.interface import StoreTx
from stepline.store.records import EventIngest, EventRecord


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
