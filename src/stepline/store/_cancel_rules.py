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
from functools import partial
from operator import itemgetter
from typing import Protocol, runtime_checkable

from stepline.expressions import index_decides
from stepline.store._ingest_rules import IngestTx, _listeners, cancel, first_holders
from stepline.store.records import CANCELLED, EventIngest, IngestResult

# a cancel matcher as ``cancelling_only`` reads it: its run's id, expression, index value, and
# when it was made (``WaitRecord``'s run_id, expression, index_value, created_at)
MatcherRow = tuple[str, str | None, str | None, float]
_ROW_CREATED_AT = itemgetter(3)


@runtime_checkable
class CancelsMatched(Protocol):
    """A transaction that reads the cancel matchers of a batch's values as ``MatcherRow``s (no
    record each) and cancels, inside ``ingest``, a run one of them found as
    ``_ingest_rules.cancel`` does (CANCELLED, its work dropped, RUN_CANCELLED in its history, an
    invoking parent's step failed), with less work for the runs it read with their matchers
    (SQLite: written with the batch's other writes when the verb ends)."""

    def matcher_rows(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[MatcherRow]:
        """``indexed_matchers``, each as a ``MatcherRow``."""
        ...

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
    quick = tx if isinstance(tx, CancelsMatched) else None
    lookup = quick.matcher_rows if quick is not None else partial(_matcher_rows, tx)
    found: dict[int, list[MatcherRow]] = {}  # by the position of the first event holding them
    for name, positions in by_name.items():
        if tx.wait_paths(name) or tx.unindexed_waits(name) or tx.unindexed_matchers(name, now):
            return None
        for path in tx.matcher_paths(name):
            first = first_holders(items, positions, path)  # the event its runs go to
            if first is None:
                return None  # not a string: the matcher decides (``_Batch``)
            if not first:
                continue
            for row in lookup(name, path, list(first), now):
                value = row[2] or ""
                if not index_decides(row[1], path, value):
                    return None
                found.setdefault(first[value], []).append(row)
    reasons = {name: f"cancelled by event {name}" for name in by_name}
    ended: set[str] = set()
    effects: list[tuple[str, str, str]] = []  # each run once: record_effects' rows, as is
    results: list[IngestResult] = []
    for i, item in enumerate(items):
        event = item.event
        matchers = found.get(i)
        cancelled: list[tuple[str, str]] = []
        if matchers:
            reason = reasons[event.name]
            for row in sorted(matchers, key=_ROW_CREATED_AT) if len(matchers) > 1 else matchers:
                run_id = row[0]
                if run_id in ended:
                    continue
                ended.add(run_id)
                if quick is not None:
                    function_id = quick.cancel_matched(run_id, now, reason)
                else:
                    function_id = cancel(tx, run_id, now, reason)
                if function_id is not None:
                    cancelled.append((run_id, function_id))
                    effects.append((event.internal_id, run_id, CANCELLED))
        results.append(IngestResult(event.internal_id, not new[i], (), (), (), tuple(cancelled)))
    if effects:
        tx.add_event_effects(effects)
    return results


def _matcher_rows(
    tx: IngestTx, event_name: str, path: str, values: Sequence[str], now: float
) -> list[MatcherRow]:
    """``indexed_matchers`` as ``MatcherRow``s (a store without ``CancelsMatched``)."""
    found = tx.indexed_matchers(event_name, path, values, now)
    return [(m.run_id, m.expression, m.index_value, m.created_at) for m in found]
