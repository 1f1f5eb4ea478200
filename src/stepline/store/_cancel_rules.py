"""The ingest order of a batch of events that can do nothing but cancel runs (``cancelling_only``):
the common batch of events sent to cancel runs by their ``cancel_on`` (``order/cancelled``),
shared by every store backend.

``_ingest_rules._Batch`` makes each event, in turn, look at its candidate matchers oldest first,
skip those of runs already cancelled, ask the matcher unless the index lookup decided, and
cancel the run: a record, a few lists and a dozen calls an event. When the index decides every
candidate and nothing else can happen to the batch, the outcome is simpler to state and to
make: each matcher's run is cancelled by the first event of the batch holding the matcher's
value (each event's runs in the order their matchers were created), unless an earlier event of
the batch or an earlier transaction ended it. A store may cancel such a run with less work than
``cancel`` does through its primitives (``CancelsMatched``: SQLite, for the runs it read with
their matchers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from stepline.expressions import index_decides
from stepline.store._admission_rules import record_effects
from stepline.store._ingest_rules import _CREATED_AT, IngestTx, _listeners, _values, cancel
from stepline.store.records import EventIngest, IngestResult, WaitRecord


@runtime_checkable
class CancelsMatched(Protocol):
    """A transaction that cancels, inside ``ingest``, a run one of the batch's cancel matchers
    found, as ``_ingest_rules.cancel`` does (CANCELLED, its work dropped, RUN_CANCELLED in its
    history, an invoking parent's step failed), with less work for the runs it read with their
    matchers (SQLite: written with the batch's other writes when the verb ends)."""

    def cancel_matched(self, run_id: str, now: float, reason: str) -> str | None:
        """``cancel(self, run_id, now, reason)``: the run's function id, or None if the run
        does not exist or has ended (nothing written)."""
        ...


def cancelling_only(
    tx: IngestTx, items: Sequence[EventIngest], new: Sequence[bool], now: float
) -> list[IngestResult] | None:
    """The ingest order (``_ingest_rules.ingest``, its events stored: ``new`` says which are
    not duplicates) of a batch that can do nothing but cancel runs by matchers the index
    decides: no event starts a run or a deferral or is handed to a function of the catalog; no
    wait and no unindexed cancel matcher of their names; and at each indexed path of a name,
    each event's value is a string or missing, and every matcher found under it is the one
    equality the lookup compared (``index_decides``). Then the outcome is ``_Batch``'s (see the
    module). None, with nothing written, for any other batch."""
    listening: dict[str, Sequence[tuple[str, str]]] = {}
    by_name: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item.new_runs or item.deferrals or _listeners(listening, tx, item):
            return None
        by_name.setdefault(item.event.name, []).append(i)
    found: dict[int, list[WaitRecord]] = {}  # by the position of the first event holding them
    for name, positions in by_name.items():
        if tx.wait_paths(name) or tx.unindexed_waits(name) or tx.unindexed_matchers(name, now):
            return None
        for path in tx.matcher_paths(name):
            strings: set[int] = set()
            first: dict[str, int] = {}  # each value's first event: the one its runs go to
            for at, value in enumerate(_values(items, positions, path, strings)):
                if value is not None:
                    if at not in strings:
                        return None  # not a string: the matcher decides (``_Batch``)
                    first.setdefault(value, positions[at])
            if not first:
                continue
            for matcher in tx.indexed_matchers(name, path, list(first), now):
                value = matcher.index_value or ""
                if not index_decides(matcher.expression, path, value):
                    return None
                found.setdefault(first[value], []).append(matcher)
    quick = tx.cancel_matched if isinstance(tx, CancelsMatched) else None
    reasons = {name: f"cancelled by event {name}" for name in by_name}
    ended: set[str] = set()
    results: list[IngestResult] = []
    for i, item in enumerate(items):
        event = item.event
        matchers = found.get(i)
        cancelled: list[tuple[str, str]] = []
        if matchers:
            reason = reasons[event.name]
            for matcher in sorted(matchers, key=_CREATED_AT) if len(matchers) > 1 else matchers:
                run_id = matcher.run_id
                if run_id in ended:
                    continue
                ended.add(run_id)
                if quick is not None:
                    function_id = quick(run_id, now, reason)
                else:
                    function_id = cancel(tx, run_id, now, reason)
                if function_id is not None:
                    cancelled.append((run_id, function_id))
        results.append(IngestResult(event.internal_id, not new[i], (), (), (), tuple(cancelled)))
    record_effects(tx, results)
    return results
