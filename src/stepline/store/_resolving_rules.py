"""The ingest order of a batch that can only resolve waits the index decides (the common batch
of events resuming runs): ``resolving_only``, tried first by ``_ingest_rules.ingest``. A backend
that claims such a batch's waits together (``IndexedResolutions``: SQLite) reads them with the
decision made by their stored text, and is handed them with their events, without a
``ResumedWait`` each; the others get the primitives' ``indexed_waits``, ``delete_wait`` and
``resume_waits`` as ``_ingest_rules._Batch`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Protocol, runtime_checkable

from stepline.expressions import index_decides
from stepline.store._admission_rules import record_effects
from stepline.store._ingest_rules import IngestTx, _listeners, first_holders
from stepline.store._primitives import EventJson, IndexedWait, ResumedWait
from stepline.store.records import EventIngest, EventRecord, FunctionSet, IngestResult

_ROW_CREATED_AT = itemgetter(6)  # an IndexedWait's
_DECIDED_CREATED_AT = itemgetter(4)  # a DecidedWait's

# a pending wait the index decides, as ``IndexedResolutions.decided_waits`` reads it: wait id,
# run id, step hash, index value, created at, step id (None: stored by schema 18, without it)
DecidedWait = tuple[str, str, str, str, float, str | None]


class ResolveIndexed(Protocol):
    """See ``IndexedResolutions.indexed_resolver``."""

    def __call__(
        self, resolved: Sequence[tuple[DecidedWait, EventRecord]], now: float, /
    ) -> None: ...


@runtime_checkable
class IndexedResolutions(Protocol):
    """A backend that resolves the waits of a resolving-only batch (``resolving_only``)
    together: it reads them decided, and claims them without a ``ResumedWait`` each."""

    def indexed_resolver(self) -> ResolveIndexed | None:
        """For this verb, the function that claims each ``(wait, event)`` (a ``DecidedWait``
        read pending in this verb, none twice) for the event that resolves it, in their order:
        the waiting step completed with the event's payload, the run woken, WAIT_MATCHED naming
        the event, which also links the run to the event for ``Store.event_runs`` (no effect to
        record); None where this verb cannot (its claims are made one by one then)."""
        ...

    def decided_waits(
        self, event_name: str, path: str, values: Sequence[str]
    ) -> list[DecidedWait] | None:
        """The pending waits for events named ``event_name`` whose value at index ``path`` is
        one of ``values`` (``indexed_waits``'s), if each one's stored expression is the one
        equality ``prepare_match`` stores for its value (``index_decides`` by its text alone);
        None if one is not (``_Batch`` decides them)."""
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
    and the lookups made in ``looked_up`` (by name, path and values), which ``_Batch`` reuses
    (a backend's ``decided_waits`` are not: ``_Batch`` reads those again)."""
    listeners: dict[str, Sequence[tuple[str, str]]] = {}
    by_name: dict[str, list[int]] = {}
    positions: list[int] = []
    name: str | None = None
    sender: FunctionSet | None = None  # the last event's name and sender, the catalog asked
    for i, item in enumerate(items):
        if item.new_runs or item.deferrals or not new[i]:
            return None
        if item.event.name != name or item.sender is not sender:
            if _listeners(listeners, tx, item):
                return None
            name, sender = item.event.name, item.sender
            positions = by_name.setdefault(name, [])
        positions.append(i)
    together = tx if isinstance(tx, IndexedResolutions) else None
    resolve = together.indexed_resolver() if together is not None else None
    decided: dict[int, list[DecidedWait]] = {}  # by the position of the event resolving them
    found: dict[int, list[IndexedWait]] = {}  # the same, as ``indexed_waits`` reads them
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
            if together is not None and resolve is not None:
                read = together.decided_waits(name, path, values)
                if read is None:
                    return None
                for wait in read:  # DecidedWait: index value 3
                    decided.setdefault(first[wait[3]], []).append(wait)
                continue
            offered = looked_up[name, path, tuple(values)] = tx.indexed_waits(name, path, values)
            for row in offered:  # IndexedWait: expression 3, index value 4
                if not index_decides(row[3], path, row[4]):
                    return None
                found.setdefault(first[row[4]], []).append(row)
    if resolve is not None:
        return _resolved_together(resolve, items, decided, now)
    resumed: list[ResumedWait] = []
    results: list[IngestResult] = []
    for i, item in enumerate(items):
        event = item.event
        waits = found.get(i)
        if not waits:
            results.append(IngestResult(event.internal_id, False, (), ()))
            continue
        encoded = EventJson(event.payload)
        runs: list[str] = []
        for wait_id, run_id, step_hash, *_, step_id in (
            sorted(waits, key=_ROW_CREATED_AT) if len(waits) > 1 else waits
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
    decided: dict[int, list[DecidedWait]],
    now: float,
) -> list[IngestResult]:
    """``resolving_only``'s order for a backend that resolves the waits together
    (``IndexedResolutions``): each event's waits, oldest first, handed over with the event, in
    one call for the batch; no record per wait."""
    resolved: list[tuple[DecidedWait, EventRecord]] = []
    results: list[IngestResult] = []
    for i, item in enumerate(items):
        event = item.event
        waits = decided.get(i)
        if not waits:
            results.append(IngestResult(event.internal_id, False, (), ()))
            continue
        if len(waits) == 1:  # the common case: one wait for the event
            wait = waits[0]
            resolved.append((wait, event))
            results.append(IngestResult(event.internal_id, False, (), (wait[1],)))
            continue
        waits.sort(key=_DECIDED_CREATED_AT)
        resolved += [(wait, event) for wait in waits]
        results.append(IngestResult(event.internal_id, False, (), tuple([w[1] for w in waits])))
    if resolved:
        resolve(resolved, now)
    return results
