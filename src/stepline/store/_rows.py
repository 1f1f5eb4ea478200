"""Row shapes the SQL backends share (SQLite and PostgreSQL select and insert the same columns in
the same order, see ``store/{sqlite,postgres}/queries.py``): the parameters of the rows they
insert, the records their rows decode to, and the clauses of a runs filter. Each backend keeps
its own SQL statements; what is written here is the same for both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson

from stepline.serde import dumps, loads
from stepline.store.records import (
    INTERNAL_PREFIX,
    EventFilter,
    EventRecord,
    HistoryRecord,
    MatcherSpec,
    NewRun,
    QueueState,
    RunFilter,
    RunRecord,
    StepRecord,
    StoredEvent,
    WaitRecord,
)
from stepline.store.search_records import SearchWindow

Params = tuple[Any, ...]
Row = TypeVar("Row")
RECENT_EVENTS = 2000  # the fewest events a by-id listing reads first (``listed_by_id``)


def json_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value).decode()


# -- rows to records (the column orders of SELECT_RUN, SELECT_STEPS, the wait and event columns,
# SELECT_HISTORY) ----------------------------------------------------------------------------------
def run_record(r: Sequence[Any]) -> RunRecord:
    error = r[8]
    return RunRecord(
        r[0],
        r[1],
        r[2],
        orjson.loads(r[3]),
        r[4],
        r[5],
        r[6],
        r[7],
        None if error is None else orjson.loads(error),
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
    )


def step_record(r: Sequence[Any]) -> StepRecord:
    return StepRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], loads(r[7]), r[8], r[9], r[10], r[11]
    )


def wait_record(r: Sequence[Any]) -> WaitRecord:
    return WaitRecord(*r)


def indexed_waits(rows: Iterable[Sequence[Any]], event_name: str, path: str) -> list[WaitRecord]:
    """The waits of an index lookup's rows (SQLite's INDEXED_WAIT_COLUMNS: neither the event's
    name nor the path, which are the ones looked up)."""
    return [WaitRecord(w, r, h, event_name, e, path, v, x, c, s) for w, r, h, e, v, x, c, s in rows]


def event_record(r: Sequence[Any]) -> EventRecord:
    """An event of a row of its columns (the stores' ``EVENT_COLUMNS``: internal_id, name,
    data, user_data, sender_id, ts, v)."""
    return EventRecord(r[0], r[1], orjson.loads(r[2]), orjson.loads(r[3]), r[4], r[5], v=r[6])


def stored_event(r: Sequence[Any]) -> StoredEvent:
    """An event with when it was received and whether it was a duplicate (LIST_EVENTS: the
    event's columns, received_at, duplicate)."""
    return StoredEvent(event_record(r), r[7], bool(r[8]))


def history_record(r: Sequence[Any]) -> HistoryRecord:
    return HistoryRecord(r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]), r[7])


# -- records to rows (the parameters of UPSERT_STEP, INSERT_HISTORY, INSERT_WAIT, INSERT_RUN,
# INSERT_QUEUE, INSERT_MATCHER) --------------------------------------------------------------------
def step_params(s: StepRecord) -> Params:
    return (
        s.run_id,
        s.hash,
        s.step_id,
        s.kind,
        s.position,
        s.status,
        s.output_json,
        json_or_none(s.error),
        s.attempts,
        s.due_at,
        s.started_at,
        s.ended_at,
    )


def history_params(
    h: HistoryRecord, worker: str | None, encode: Callable[[Any], str | None] = json_or_none
) -> Params:
    return (h.run_id, h.ts, h.kind, h.step_id, h.attempt, h.duration, encode(h.data), worker)


def queued_history_params(run_id: str, now: float) -> Params:
    """The RUN_QUEUED history row of a new run."""
    return (run_id, now, "RUN_QUEUED", None, None, None, None, None)


def wait_params(w: WaitRecord) -> Params:
    return (
        w.wait_id,
        w.run_id,
        w.step_hash,
        w.event_name,
        w.expression,
        w.index_path,
        w.index_value,
        w.expires_at,
        w.created_at,
    )


def run_params(new_run: NewRun, now: float) -> Params:
    a = new_run.admission
    return (
        new_run.run_id,
        new_run.function_id,
        dumps(list(new_run.event_ids)).decode(),
        now,
        new_run.parent_run_id,
        new_run.parent_step_hash,
        a.start_timeout,
        a.finish_timeout,
        a.singleton_key,
        new_run.app_id,
    )


def queue_params(new_run: NewRun, now: float, due_at: float | None) -> Params:
    """A new run's queue row: due at ``due_at`` (now if None), its concurrency keys."""
    slots = [*new_run.admission.concurrency, (None, None), (None, None)][:2]
    return (
        new_run.run_id,
        now if due_at is None else due_at,
        new_run.function_id,
        slots[0][0],
        slots[0][1],
        slots[1][0],
        slots[1][1],
        new_run.app_id,
    )


def matcher_params(run_id: str, spec: MatcherSpec, now: float, matcher_id: str) -> Params:
    """One cancel matcher row of a new run (``spec``: one of its admission's ``cancel_on``)."""
    expires = None if spec.timeout is None else now + spec.timeout
    return (
        matcher_id,
        run_id,
        spec.event_name,
        spec.expression,
        spec.index_path,
        spec.index_value,
        expires,
        now,
    )


# -- a runs filter ---------------------------------------------------------------------------------
def run_filter(
    query: RunFilter, mark: str, waiting_for_worker: str, status_mark: str | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") of ``query`` with ``mark`` as the parameter placeholder, and its
    parameters (the limit not included). ``waiting_for_worker`` is the backend's clause for
    runs no live worker serves (one parameter: the time). ``status_mark`` (default ``mark``):
    the placeholder the status is compared with (SQLite's ``queries.STATUS_MARK``)."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.function_id is not None:
        clauses.append(f"function_id = {mark}")
        params.append(query.function_id)
    if query.app_id is not None:
        clauses.append(f"app_id IN ({mark}, '')")
        params.append(query.app_id)
    if query.status is not None:
        clauses.append(f"status = {status_mark or mark}")
        params.append(query.status)
    if query.event_id is not None:
        clauses.append(
            f"run_id IN (SELECT run_id FROM run_events WHERE event_id = {mark}"
            " AND effect = 'started')"
        )
        params.append(query.event_id)
    if query.waiting_for_worker_at is not None:
        clauses.append(waiting_for_worker)
        params.append(query.waiting_for_worker_at)
    if query.created_after is not None:
        clauses.append(f"created_at >= {mark}")
        params.append(query.created_after)
    if query.created_before is not None:
        clauses.append(f"created_at <= {mark}")
        params.append(query.created_before)
    if query.after is not None:
        clauses.append(f"(created_at, run_id) < ({mark}, {mark})")
        params.extend(query.after)
    if query.newer_than is not None:
        clauses.append(f"(created_at, run_id) > ({mark}, {mark})")
        params.extend(query.newer_than)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def search_window(rows: Iterable[Sequence[Any]], window: int) -> SearchWindow:
    """A ``SearchWindow`` from SEARCH_WINDOW's rows: (position, runs selected up to one past
    the window, kept, the run's columns...)."""
    candidates: list[tuple[int, RunRecord]] = []
    size, edge, more = 0, None, False
    for row in rows:
        n, selected, kept = row[0], row[1], row[2]
        size, more = min(selected, window), selected > window
        if n > window:
            continue
        run = run_record(row[3:])
        if n == size:
            edge = run
        if kept:
            candidates.append((n, run))
    return SearchWindow(candidates, size, edge, more)


def kept_window(rows: Iterable[Sequence[Any]], window: int) -> SearchWindow:
    """A ``SearchWindow`` from rows (kept, the run's columns...) of the newest runs the filter
    selects, newest first, up to one past the window: only the kept runs and the window's
    oldest are decoded."""
    candidates: list[tuple[int, RunRecord]] = []
    size, last, more = 0, None, False
    for n, row in enumerate(rows, start=1):
        if n > window:
            more = True
            break
        size, last = n, row
        if row[0]:
            candidates.append((n, run_record(row[1:])))
    edge = None
    if last is not None:
        edge = (
            candidates[-1][1] if candidates and candidates[-1][0] == size else run_record(last[1:])
        )
    return SearchWindow(candidates, size, edge, more)


def event_filter(
    query: EventFilter, mark: str, name_column: str = "name", id_column: str = "internal_id"
) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") of an events filter and its parameters (the limit not
    included), with ``mark`` as the parameter placeholder; the name and the cursor compared as
    ``name_column`` and ``id_column`` (SQLite's ``+name``: by no index)."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.name is not None:
        clauses.append(f"{name_column} = {mark}")
        params.append(query.name)
    if query.received_after is not None:
        clauses.append(f"received_at >= {mark}")
        params.append(query.received_after)
    if query.received_before is not None:
        clauses.append(f"received_at <= {mark}")
        params.append(query.received_before)
    if query.after is not None:
        clauses.append(f"(received_at, internal_id) < ({mark}, {mark})")
        params.extend(query.after)
    if query.id_below is not None:
        clauses.append(f"{id_column} < {mark}")
        params.append(query.id_below)
    if query.internal_id is not None:
        clauses.append(f"internal_id = {mark}")
        params.append(query.internal_id)
    if not query.include_internal:  # case-sensitive, as the reserved prefix (not LIKE's)
        clauses.append(f"substr(name, 1, {len(INTERNAL_PREFIX)}) <> '{INTERNAL_PREFIX}'")
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def recent_scan(query: EventFilter) -> int:
    """How many of the newest events below a by-id listing's cursor ``listed_by_id`` reads
    first (the backends' ``LIST_EVENTS_BY_ID_RECENT``)."""
    return max(RECENT_EVENTS, 20 * query.limit)


def listed_by_id(
    query: EventFilter,
    recent: Callable[[], Sequence[Row]],
    every: Callable[[], Sequence[Row]],
) -> Sequence[Row]:
    """``Store.list_events`` by id (``query.id_below`` set), the same on SQLite and PostgreSQL:
    ``recent()`` filters the newest ``recent_scan(query)`` events below the cursor (the
    primary key read backward: a few pages when the events asked for are among the newest);
    when they hold ``query.limit`` matches, those are the page (the matches with the greatest
    ids below the cursor: exact). Otherwise ``every()`` reads the page from every match,
    by the filter's own index (an event name's events in the time window), and sorts them: a
    backward scan of the key filtered by name would read the whole table for a name absent
    from the newest events (PostgreSQL's planner took it for one not received in the last
    hour; SQLite sorted all of a name's events instead). Both give the rows of the events
    table only (SQLite's kept announcements are merged after). PostgreSQL lists without a name
    in one statement, as its planner chooses (its statistics of one column are right)."""
    found = recent()
    return found if len(found) >= query.limit else every()


def queue_states(
    run_ids: Sequence[str],
    rows: Sequence[Sequence[Any]],
    wait_rows: Iterable[Sequence[Any]],
    leased_keys: Callable[[], Iterable[tuple[str | None, str | None]]],
) -> list[QueueState]:
    """``Store.queue_states`` from one snapshot's rows: ``rows`` of ``QUEUE_STATES`` (run id,
    due at, leased now, key 1, its limit, key 2, its limit), the runs' wait rows, and
    ``leased_keys()``: the concurrency keys of every live lease (read only when one of the runs
    has a key), from which a run not leased learns which of its keys are full."""
    by_run = {r[0]: r for r in rows}
    waits: dict[str, list[WaitRecord]] = {}
    for r in wait_rows:
        waits.setdefault(r[1], []).append(wait_record(r))
    held: Counter[str] = Counter()
    if any(r[3] is not None or r[5] is not None for r in rows):
        for k1, k2 in leased_keys():
            held.update(k for k in (k1, k2) if k is not None)
    states = []
    for run_id in run_ids:
        row = by_run.get(run_id)
        if row is None:
            continue
        _, due_at, leased, k1, n1, k2, n2 = row
        slots = [(k, n) for k, n in ((k1, n1), (k2, n2)) if k is not None]
        full = () if leased else tuple(k for k, n in slots if held[k] >= n)
        states.append(QueueState(run_id, due_at, bool(leased), full, tuple(waits.get(run_id, ()))))
    return states
