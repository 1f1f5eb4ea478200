"""The ingest order of a batch that can only resolve waits the index decides (the common batch
of events resuming runs): ``resolving_only``, tried first by ``_ingest_rules.ingest``. A backend
that claims such a batch's waits together (``IndexedResolutions``: SQLite) is handed the lookup's
rows with their events, without a ``ResumedWait`` each; the others get the primitives'
``delete_wait`` / ``resume_waits`` as from ``_ingest_rules._Batch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Protocol, runtime_checkable

from stepline.expressions import index_decides
from stepline.store._admission_rules import record_effects
from stepline.store._ingest_rules import IngestTx, _listeners, first_holders
from stepline.store._primitives import EventJson, IndexedWait, ResumedWait
from stepline.store.records import EventIngest, EventRecord, IngestResult

_ROW_CREATED_AT = itemgetter(6)  # an IndexedWait's


class ResolveIndexed(Protocol):
    """See ``IndexedResolutions.indexed_resolver``."""

    def __call__(
        self, resolved: Sequence[tuple[IndexedWait, EventRecord]], now: float, /
    ) -> None: ...


@runtime_checkable
class IndexedResolutions(Protocol):
    """A backend that resolves the waits of a resolving-only batch (``resolving_only``)
    together, from the lookup's rows, without a ``ResumedWait`` each."""

    def indexed_resolver(self) -> ResolveIndexed | None:
        """For this verb, the function that claims each ``(row, event)`` of
        ``tx.indexed_waits``'s rows (an ``IndexedWait``, pending when read in this verb, none
        twice) for the event that resolves it, in their order: the waiting step completed
        with the event's payload, the run woken, WAIT_MATCHED naming the event, which also
        links the run to the event for ``Store.event_runs`` (no effect to record); None where
        this verb cannot (the backend's claims are made one by one then)."""
        ...


def resolving_only(
    tx: IngestTx,
    items: Sequence[EventIngest],
    new: list[bool],
    now: float,
    looked_up: dict[tuple[str, str, tuple[str, ...]], list[IndexedWait]],
) -> list[IngestResult] | None:
    """The ingest order of a batch that can do nothing but resolve waits the index decides (the
    common batch of events resuming runs): no event is a duplicate, starts a run or a deferral,
    or is handed to a function of the catalog; no cancel matcher and no unindexed wait of their
    names; and at each indexed path of its name, each event's value is a string or missing, and
    every wait found under it is the one equality the lookup compared (``index_decides``). The
    order is then that each event, in turn, resolves every wait found under its values that no
    earlier event of the batch resolved, oldest first, which ``_Batch`` would do with a record,
    a list and a few calls per event; here the lookup's rows are handed out by value, each to
    the first event holding it. None, with nothing written, for any other batch (``_Batch``),
    and the lookups made in ``looked_up`` (by name, path and values), which ``_Batch`` reuses."""
    listeners: dict[str, Sequence[tuple[str, str]]] = {}
    by_name: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item.new_runs or item.deferrals or not new[i] or _listeners(listeners, tx, item):
            return None
        by_name.setdefault(item.event.name, []).append(i)
    found: dict[int, list[IndexedWait]] = {}  # by the position of the event resolving them
    for name, positions in by_name.items():
        if tx.matcher_paths(name) or tx.unindexed_matchers(name, now) or tx.unindexed_waits(name):
            return None
        for path in tx.wait_paths(name):
            first = first_holders(items, positions, path)  # the event its waits go to
            if first is None:
                return None  # not a string: the matcher decides (``_Batch``)
            if not first:
                continue
            values = list(first)
            offered = looked_up[name, path, tuple(values)] = tx.indexed_waits(name, path, values)
            for row in offered:  # IndexedWait: expression 3, index value 4
                if not index_decides(row[3], path, row[4]):
                    return None
                found.setdefault(first[row[4]], []).append(row)
    resolve = tx.indexed_resolver() if isinstance(tx, IndexedResolutions) else None
    if resolve is not None:
        return _resolved_together(resolve, items, found, now)
    resumed: list[ResumedWait] = []
    results: list[IngestResult] = []
    for i, item in enumerate(items):
        event = item.event
        rows = found.get(i)
        if not rows:
            results.append(IngestResult(event.internal_id, False, (), ()))
            continue
        encoded = EventJson(event.payload)
        runs: list[str] = []
        for wait_id, run_id, step_hash, *_, step_id in (
            sorted(rows, key=_ROW_CREATED_AT) if len(rows) > 1 else rows
        ):
            if tx.delete_wait(run_id, wait_id):
                resumed.append(
                    ResumedWait(run_id, step_hash, encoded, event.internal_id, step_id, wait_id)
                )
                runs.append(run_id)
        results.append(IngestResult(event.internal_id, False, (), tuple(runs)))
    if resumed:
        tx.resume_waits(resumed, now)
    record_effects(tx, results)
    return results


def _resolved_together(
    resolve: ResolveIndexed,
    items: Sequence[EventIngest],
    found: dict[int, list[IndexedWait]],
    now: float,
) -> list[IngestResult]:
    """``resolving_only``'s order for a backend that resolves the lookup's rows together
    (``IndexedResolutions``): each event's rows, oldest first, handed over with the event, in
    one call for the batch; no record per wait."""
    resolved: list[tuple[IndexedWait, EventRecord]] = []
    results: list[IngestResult] = []
    for i, item in enumerate(items):
        event = item.event
        rows = found.get(i)
        if not rows:
            results.append(IngestResult(event.internal_id, False, (), ()))
            continue
        if len(rows) == 1:  # the common case: one wait for the event
            row = rows[0]
            resolved.append((row, event))
            results.append(IngestResult(event.internal_id, False, (), (row[1],)))
            continue
        rows.sort(key=_ROW_CREATED_AT)
        resolved += [(row, event) for row in rows]
        results.append(IngestResult(event.internal_id, False, (), tuple([r[1] for r in rows])))
    if resolved:
        resolve(resolved, now)
    return results
