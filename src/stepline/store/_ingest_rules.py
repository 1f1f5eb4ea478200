"""The ingest order and the cancellation of a run, shared by every store backend.

One event is ingested in this order (DESIGN.md §7.7): it is stored and de-duplicated by sender
id (a verb stores its events together first, in their order); the runs whose cancel matchers it
satisfies are cancelled; the waits it satisfies are resolved; and, unless it is a duplicate
(which still cancels and resumes, as in Inngest), its runs and deferrals go through admission
(``_admission_rules.start_runs``), and it is handed to the functions of the trigger catalog
listening to its name that its sender did not plan itself (an inbox row each, ``deliver``; see
``EventIngest.sender``). What each event did to runs (started, resumed, cancelled) is recorded
for ``Store.event_runs`` in the same verb. Events nothing listens to (``_unheard``: the
announcements of cancelled runs, usually) are only stored. The backend supplies the primitives
(``_primitives.EventPrimitives``) and runs these functions inside one verb. ``admit_taken``
starts the runs a worker planned for the inbox rows it took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from operator import attrgetter
from typing import Any, Protocol

from stepline.expressions import index_decides, string_holders, values_at
from stepline.store._admission_rules import AdmissionTx, record_effects, start_runs
from stepline.store._primitives import (
    EventJson,
    EventPrimitives,
    IndexedWait,
    ResumedWait,
    RunPrimitives,
)
from stepline.store._rows import indexed_waits
from stepline.store.records import (
    CANCELLED,
    INVOKED_CANCELLED,
    EventIngest,
    EventRecord,
    FunctionSet,
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
    ``wait_matches`` is asked about each candidate wait and cancel matcher, except one the
    index lookup decided: found under the event's string value at its index path, with a
    stored expression that is exactly that one equality (``index_decides``)."""
    if not items:
        return []
    events = [item.event for item in items]
    new = tx.insert_events(events, now)  # one statement for the batch, where it can
    if _unheard(tx, items, now):
        pairs = zip(events, new, strict=True)
        return [IngestResult(e.internal_id, not fresh, (), ()) for e, fresh in pairs]
    looked_up: dict[tuple[str, str, tuple[str, ...]], list[IndexedWait]] = {}
    resolved = _resolving_rules.resolving_only(tx, items, new, now, looked_up)
    if resolved is not None:
        return resolved
    cancelled = _cancel_rules.cancelling_only(tx, items, new, now)
    if cancelled is not None:
        return cancelled
    batch = _Batch(tx, events, new, now, wait_matches, looked_up)
    results = [batch.ingest_one(i, item) for i, item in enumerate(items)]
    batch.write_resumed()
    if batch.delivered:
        tx.deliver(batch.delivered, now)
    record_effects(tx, results)
    return results


def admit_taken(tx: AdmissionTx, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
    """Start the runs (and deferrals) planned for events already stored, taken from an inbox
    (the ``StoreTx.admit_taken`` verb, inside the caller's verb): admission as for a direct
    send; no event is stored again, no wait or matcher looked at (ingestion did that)."""
    results: list[IngestResult] = []
    for item in items:
        cancelled: list[tuple[str, str]] = []
        started, skipped = start_runs(tx, item, now, cancelled)
        results.append(
            IngestResult(item.event.internal_id, False, started, (), skipped, tuple(cancelled))
        )
    record_effects(tx, results)
    return results


def _unheard(tx: IngestTx, items: Sequence[EventIngest], now: float) -> bool:
    """Whether nothing listens to the items' events, which are then only stored: no run or
    deferral planned for one, no function of the catalog to hand one to, no wait and no cancel
    matcher of their names (the announcements of cancelled runs, usually: nothing listens to
    ``inngest/function.*``). The ingest order would do nothing else with them. Asks each name
    once, and stops at the first event something may listen to (a batch of events resolving
    waits pays for one name)."""
    listeners: dict[str, Sequence[tuple[str, str]]] = {}
    quiet: set[str] = set()
    for item in items:
        if item.new_runs or item.deferrals:
            return False
        name = item.event.name
        if name not in quiet:
            if not _unmatched(tx, name, now):
                return False
            quiet.add(name)
        if _listeners(listeners, tx, item):
            return False
    return True


def unheard(
    tx: EventPrimitives, names: Iterable[str], sender: FunctionSet | None, now: float
) -> bool:
    """Whether events of these names, planned by ``sender`` (``EventIngest.sender``) to start
    no run, would only be stored by the ingest order (``_unheard``): no wait and no cancel
    matcher of their names, no function of the catalog but the sender's listening to them."""
    for name in dict.fromkeys(names):
        if not _unmatched(tx, name, now):
            return False
        if sender is not None and _others(tx.listeners(name), sender):
            return False
    return True


def _unmatched(tx: EventPrimitives, name: str, now: float) -> bool:
    """No wait and no cancel matcher of events named ``name``, indexed or not."""
    return not (
        tx.matcher_paths(name)
        or tx.wait_paths(name)
        or tx.unindexed_matchers(name, now)
        or tx.unindexed_waits(name)
    )


def _listeners(
    listeners: dict[str, Sequence[tuple[str, str]]], tx: EventPrimitives, item: EventIngest
) -> tuple[tuple[str, str], ...]:
    """The catalog's (app, function) pairs listening to the item's event that its sender did
    not plan: none for an event sent for its own runs only (``sender`` None). ``listeners``:
    the catalog's answers by event name so far in this verb (the catalog is one verb's)."""
    sender = item.sender
    if sender is None:
        return ()
    name = item.event.name
    listening = listeners.get(name)
    if listening is None:
        listening = listeners[name] = tx.listeners(name)
    if not listening:
        return ()  # the common case
    return _others(listening, sender)


def _others(
    listening: Sequence[tuple[str, str]], sender: FunctionSet
) -> tuple[tuple[str, str], ...]:
    """The pairs of ``listening`` that are not the sender's own functions."""
    mine, app_id = sender.function_ids, sender.app_id
    return tuple(pair for pair in listening if pair[0] != app_id or pair[1] not in mine)


def first_holders(
    items: Sequence[EventIngest], positions: Sequence[int], path: str
) -> dict[str, int] | None:
    """Each value at ``path`` of the events at ``positions`` (``_values``), with the position
    of the first event holding it; None when one of them holds a value that is not a string
    there (the index does not decide it: ``index_decides``)."""
    if path.startswith("data.") and len(path) > 5:  # read in each event's data (``_values``)
        return string_holders([items[i].event.data for i in positions], positions, path[5:])
    strings: set[int] = set()
    first: dict[str, int] = {}
    for at, value in enumerate(_values(items, positions, path, strings)):
        if value is not None:
            if at not in strings:
                return None
            first.setdefault(value, positions[at])
    return first


def _values(
    items: Sequence[EventIngest], positions: Sequence[int], path: str, strings: set[int]
) -> list[str | None]:
    """``values_at`` the payloads of the events at ``positions``: under ``data.`` read in each
    event's data, which is its payload's, without making the payload."""
    if path.startswith("data.") and len(path) > 5:
        return values_at([items[i].event.data for i in positions], path[5:], strings)
    return values_at([items[i].event.payload() for i in positions], path, strings)


class _Batch:
    """One ingest verb.

    The index is read once for the whole batch: the candidate waits and cancel matchers of
    every event, one lookup per (event name, index path) with all the batch's values. Candidates
    only propose (``_primitives``): a wait an earlier event of the batch resolved, or a run it
    cancelled, fails its deciding primitive, and is skipped before asking the matcher. No wait
    is added during ingestion; a cancel matcher is (a run created with ``cancel_on``), so after
    one the matchers are looked up per event again. The effects of resolved waits are written in
    batches (``resume_waits``): before anything may cancel a run (so a run's WAIT_MATCHED
    precedes its RUN_CANCELLED) and at the end."""

    def __init__(
        self,
        tx: IngestTx,
        events: list[EventRecord],
        new: list[bool],
        now: float,
        wait_matches: WaitMatcher,
        looked_up: dict[tuple[str, str, tuple[str, ...]], list[IndexedWait]],
    ) -> None:
        self.tx, self.now, self.wait_matches = tx, now, wait_matches
        self.resumed: list[ResumedWait] = []
        self.delivered: list[tuple[str, str, str]] = []  # inbox rows: (app, function, event)
        self.deleted: set[str] = set()  # waits resolved in this verb
        self.ended: set[str] = set()  # runs cancelled in this verb (cancel_on, singleton)
        # names with no unindexed waits (none are added during ingestion) or matchers (until a
        # run with cancel_on is created): their primitives are not asked again in this verb
        self.no_unindexed_waits: set[str] = set()
        self.no_unindexed_matchers: set[str] = set()
        self.listeners: dict[str, Sequence[tuple[str, str]]] = {}  # see _listeners
        self.new = new  # whether each event is new (not a duplicate)
        # each event's payload, built once (see payload)
        self.events = events
        self.payloads: list[dict[str, Any] | None] = [None] * len(events)
        # by index path: the events whose value there is a string (see _decided)
        self.strings: dict[str, set[int]] = {}
        self.waits = _indexed(
            self, range(len(events)), tx.wait_paths, _reusing(looked_up, tx), self.strings
        )
        self.matchers: list[list[WaitRecord]] | None = _indexed(
            self, range(len(events)), tx.matcher_paths, self._indexed_matchers, self.strings
        )

    def payload(self, i: int) -> dict[str, Any]:
        """The payload of the batch's event ``i``: built once, for the index lookups and the
        resolved waits' step output (which only read it)."""
        payload = self.payloads[i]
        if payload is None:
            payload = self.payloads[i] = self.events[i].payload()
        return payload

    def _indexed_matchers(self, name: str, path: str, values: Sequence[str]) -> list[WaitRecord]:
        return self.tx.indexed_matchers(name, path, values, self.now)

    def write_resumed(self) -> None:
        if self.resumed:
            self.tx.resume_waits(self.resumed, self.now)
            self.resumed.clear()

    def ingest_one(self, i: int, item: EventIngest) -> IngestResult:
        event = item.event
        name = event.name
        duplicate = not self.new[i]
        # a duplicate id starts no run but still cancels and resumes, as in Inngest; an event
        # with no candidate (of a name known to have no unindexed ones) asks nothing
        cancelled: list[tuple[str, str]] = []
        matchers = self.matchers
        if matchers is None or matchers[i] or name not in self.no_unindexed_matchers:
            cancelled = self._apply_cancel_matchers(i, event)
        resumed_runs: tuple[str, ...] = ()
        if self.waits[i] or name not in self.no_unindexed_waits:
            resumed_runs = self._resolve_waits(i, event)
        if duplicate:
            return IngestResult(event.internal_id, True, (), resumed_runs, (), tuple(cancelled))
        handed = _listeners(self.listeners, self.tx, item)
        if handed:
            self.delivered += [(app, fn, event.internal_id) for app, fn in handed]
        if item.new_runs or item.deferrals:
            self.write_resumed()  # a singleton may cancel a resumed run
            started, skipped = start_runs(self.tx, item, self.now, cancelled)
            self.ended.update(run_id for run_id, _ in cancelled)  # a singleton's too
            if self.matchers is not None and _adds_matchers(item):
                self.matchers = None  # a new run's cancel_on: look matchers up per event now
                self.no_unindexed_matchers.clear()
        else:
            started, skipped = (), ()
        return IngestResult(
            event.internal_id, False, started, resumed_runs, skipped, tuple(cancelled), handed
        )

    def _apply_cancel_matchers(self, i: int, event: EventRecord) -> list[tuple[str, str]]:
        tx, now = self.tx, self.now
        unindexed = _unindexed(event.name, self.no_unindexed_matchers, tx.unindexed_matchers, now)
        if self.matchers is not None:
            indexed = self.matchers[i]
        else:
            lookup = self._indexed_matchers
            indexed = _indexed(self, (i,), tx.matcher_paths, lookup, self.strings)[0]
        if not indexed and not unindexed:
            return []
        cancelled: list[tuple[str, str]] = []
        reason = f"cancelled by event {event.name}"
        for matcher in _oldest_first(unindexed, indexed):
            run_id = matcher.run_id
            if run_id in self.ended:
                continue
            if not self._decided(i, matcher) and not self.wait_matches(matcher, event):
                continue
            self.write_resumed()  # a wait this verb resolved stays before the cancellation
            function_id = cancel(tx, run_id, now, reason)
            self.ended.add(run_id)
            if function_id is not None:
                cancelled.append((run_id, function_id))
        return cancelled

    def _decided(self, i: int, candidate: WaitRecord) -> bool:
        """Whether the index lookup decided that the batch's event ``i`` satisfies ``candidate``
        (a wait or a cancel matcher): found under the event's string value at its index path,
        with a stored expression that is exactly that equality (the lookup compared the two
        strings), so the matcher is not asked."""
        path = candidate.index_path
        return (
            path is not None
            and i in self.strings.get(path, ())
            and index_decides(candidate.expression, path, candidate.index_value or "")
        )

    def _resolve_waits(self, i: int, event: EventRecord) -> tuple[str, ...]:
        indexed = self.waits[i]
        unindexed: list[WaitRecord] = []
        if event.name not in self.no_unindexed_waits:
            unindexed = self.tx.unindexed_waits(event.name)
            if not unindexed:
                self.no_unindexed_waits.add(event.name)
        if not indexed and not unindexed:
            return ()  # nothing waits for this event: the common case
        encoded: EventJson | None = None
        runs: list[str] = []
        for wait in _oldest_first(unindexed, indexed):
            if wait.wait_id in self.deleted or wait.run_id in self.ended:
                continue
            if not self._decided(i, wait) and not self.wait_matches(wait, event):
                continue
            if not self.tx.delete_wait(wait.run_id, wait.wait_id):
                continue
            self.deleted.add(wait.wait_id)
            if encoded is None:
                encoded = EventJson(partial(self.payload, i))
            self.resumed.append(
                ResumedWait(
                    wait.run_id,
                    wait.step_hash,
                    encoded,
                    event.internal_id,
                    wait.step_id,
                    wait.wait_id,
                )
            )
            runs.append(wait.run_id)
        return tuple(runs)


class _Lookup(Protocol):
    def __call__(self, name: str, path: str, values: Sequence[str], /) -> list[WaitRecord]: ...


def _indexed(
    batch: _Batch,
    positions: Sequence[int],
    paths_of: Callable[[str], Sequence[str]],
    lookup: _Lookup,
    strings: dict[str, set[int]] | None = None,
) -> list[list[WaitRecord]]:
    """For each of the batch's events at ``positions``, the waits (or matchers) the index offers
    under the event's values at the indexed paths of its name: one lookup per (name, path) for
    all the events. The payload is only built for events of a name something is indexed under.
    ``strings``, if given, gets by path the positions of the events whose value there is a
    string."""
    events = batch.events
    if len(positions) == 1 and not paths_of(events[positions[0]].name):
        return [[]]  # one event (a send's) of a name nothing is indexed under: the usual
    found: list[list[WaitRecord]] = [[] for _ in positions]
    by_name: dict[str, list[int]] = {}
    for at, i in enumerate(positions):
        by_name.setdefault(events[i].name, []).append(at)
    for name, ats in by_name.items():
        paths = paths_of(name)
        if not paths:
            continue
        payloads = [batch.payload(positions[at]) for at in ats]
        for path in paths:
            under: dict[str, list[int]] = {}
            plain: set[int] | None = set() if strings is not None else None
            for at, value in zip(ats, values_at(payloads, path, plain), strict=True):
                if value is not None:
                    under.setdefault(value, []).append(at)
            if strings is not None and plain:
                string_at = strings.setdefault(path, set())
                string_at.update(positions[ats[j]] for j in plain)
            if not under:
                continue
            for record in lookup(name, path, list(under)):
                for at in under.get(record.index_value or "", ()):
                    found[at].append(record)
    return found


def _reusing(
    looked_up: dict[tuple[str, str, tuple[str, ...]], list[IndexedWait]], tx: IngestTx
) -> _Lookup:
    """The records of ``tx.indexed_waits``, its rows taken from ``looked_up`` when
    ``resolving_only`` (``_resolving_rules``) made the same lookup in this verb (nothing was
    written since: it gave up first)."""

    def lookup(name: str, path: str, values: Sequence[str], /) -> list[WaitRecord]:
        found = looked_up.pop((name, path, tuple(values)), None)
        rows = tx.indexed_waits(name, path, values) if found is None else found
        return indexed_waits(rows, name, path)

    return lookup


def _unindexed(
    name: str, none: set[str], read: Callable[[str, float], list[WaitRecord]], now: float
) -> list[WaitRecord]:
    """``read(name, now)`` unless ``none`` says it found nothing before (remembered there)."""
    if name in none:
        return []
    found = read(name, now)
    if not found:
        none.add(name)
    return found


def _oldest_first(unindexed: list[WaitRecord], indexed: list[WaitRecord]) -> list[WaitRecord]:
    rows = unindexed + indexed if unindexed and indexed else unindexed or indexed
    return sorted(rows, key=_CREATED_AT) if len(rows) > 1 else rows


def _adds_matchers(item: EventIngest) -> bool:
    """Whether ingesting ``item`` may create a run with cancel matchers."""
    return any(run.admission.cancel_on for run in item.new_runs) or any(
        deferral.run.admission.cancel_on for deferral in item.deferrals
    )


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


class _CancelTx(RunPrimitives, Protocol):
    def add_event_effects(self, effects: Sequence[tuple[str, str, str]]) -> None: ...


def cancel_by(
    tx: _CancelTx, run_id: str, now: float, reason: str, event_id: str | None
) -> str | None:
    """``cancel``, and the run linked to the event that cancelled it (``event_id``, if any) as
    CANCELLED for ``Store.event_runs``, as an ingested event's cancellations are."""
    function_id = cancel(tx, run_id, now, reason)
    if function_id is not None and event_id is not None:
        tx.add_event_effects([(event_id, run_id, CANCELLED)])
    return function_id


def apply_wake(tx: RunPrimitives, wake: Wake, now: float) -> None:
    """Settle a parent's pending step with its child's end, and make the parent due."""
    if tx.settle_pending_step(wake, now):
        tx.wake_run(wake.run_id, now)


# The shortcuts of ``ingest`` import this module: bound once it is whole (an import statement in
# ``ingest`` itself cost every ingest verb ~3.5 us a module to look the module up again)
from stepline.store import _cancel_rules, _resolving_rules  # noqa: E402
