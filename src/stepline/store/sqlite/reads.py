"""The SQLite store's reads, each on the thread's connection (``@reading``: SQLite's errors
read as ``StoreError``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from stepline.serde import dumps, loads
from stepline.store import _rows as shapes
from stepline.store._catalog import app_records
from stepline.store._clauses import match_sql
from stepline.store.records import (
    AppRecord,
    EventFilter,
    EventRecord,
    EventRunRecord,
    FunctionSet,
    HistoryRecord,
    QueueState,
    RunFilter,
    RunRecord,
    RunState,
    SkipRecord,
    StepRecord,
    StoredEvent,
    StoreStats,
    WorkerRecord,
)
from stepline.store.search_records import RunClause, SearchWindow
from stepline.store.sqlite import _derived, _search
from stepline.store.sqlite import _wait_queries as w
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._arms import app_ids, chunks, unpaused
from stepline.store.sqlite._database import Database, reading
from stepline.store.sqlite._event_rows import event_id_data, select_events

FEW_OF_NAME = 200  # events of a name the by-id listing reads by its index at once (_few_of_name)


class SQLiteReads(Database):
    """The Store's reads of the file."""

    # -- reads ------------------------------------------------------------------------------------
    @reading
    def load_run(self, run_id: str) -> RunState | None:
        with self._read() as conn:
            return load_state(conn, run_id)

    @reading
    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._conn().execute(q.SELECT_RUN, (run_id,)).fetchone()
        return None if row is None else shapes.run_record(row)

    @reading
    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        where, params = shapes.run_filter(query, "?", q.WAITING_FOR_WORKER, q.STATUS_MARK)
        found = self._conn().execute(q.LIST_RUNS.format(where=where), [*params, query.limit])
        return [shapes.run_record(r) for r in found]

    @reading
    def search_window(
        self, query: RunFilter, window: int, clauses: tuple[RunClause, ...] = ()
    ) -> SearchWindow:
        where, params = shapes.run_filter(query, "?", q.WAITING_FOR_WORKER, q.STATUS_MARK)
        match, matched = match_sql(clauses, _search.CLAUSES)
        added, joins = _search.window_joins(clauses)
        if joins:
            statement = q.SEARCH_WINDOW_JOINED.format(
                where=where, match=match, added=added, join=joins
            )
            rows = self._conn().execute(statement, [*matched, *params, window + 1])
        else:
            statement = q.SEARCH_WINDOW.format(where=where, match=match)
            rows = self._conn().execute(statement, [*matched, *params, window + 1])
        return shapes.kept_window(rows, window)

    @reading
    def count_runs(self, query: RunFilter) -> int:
        where, params = shapes.run_filter(query, "?", q.WAITING_FOR_WORKER, q.STATUS_MARK)
        statement = q.COUNT_RUNS.format(where=where)
        return int(self._conn().execute(statement, [*params, query.limit]).fetchone()[0])

    @reading
    def get_steps(self, run_id: str) -> list[StepRecord]:
        return select_steps(self._conn(), run_id)

    @reading
    def steps_of(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        found: dict[str, list[StepRecord]] = {}
        for row in self._conn().execute(q.STEPS_OF, (dumps(list(run_ids)),)):
            found.setdefault(row[0], []).append(shapes.step_record(row))
        return found

    @reading
    def list_events(self, query: EventFilter) -> list[StoredEvent]:
        where, params = shapes.event_filter(query, "?")
        by_id = query.id_below is not None
        found: Sequence[Any]
        with self._read() as conn:  # and the announcements kept as a row, merged in its order
            if by_id:
                every = partial(_fetched, conn, *every_statement(query))
                if _few_of_name(conn, query):
                    found = every()
                else:
                    found = shapes.listed_by_id(query, partial(_newest, conn, query), every)
                kept = _derived.listed_by_id(conn, query)
            else:
                listing = q.LIST_EVENTS.format(where=where)
                found = conn.execute(listing, [*params, query.limit]).fetchall()
                kept = _derived.listed(conn, query)
            rows = [*found, *kept]
        rows.sort(key=(lambda r: r[0]) if by_id else (lambda r: (r[7], r[0])), reverse=True)
        return [shapes.stored_event(r) for r in rows[: query.limit]]

    @reading
    def event_runs(self, event_ids: Sequence[str], limit: int = 100) -> list[EventRunRecord]:
        pairs = [(event_id, event_id_data(event_id)) for event_id in event_ids]
        found = self._conn().execute(q.EVENT_RUNS, (dumps(pairs), limit))
        return [EventRunRecord(r[0], r[1], shapes.run_record(r[2:])) for r in found]

    @reading
    def stats(self, now: float) -> StoreStats:
        conn = self._conn()
        by_status = {r[0]: r[1] for r in conn.execute(q.RUNS_BY_STATUS)}
        depth = conn.execute(q.QUEUE_DEPTH).fetchone()[0]
        due, oldest = conn.execute(q.QUEUE_DUE, (now,)).fetchone()
        return StoreStats(by_status, depth, due, oldest)

    @reading
    def get_history(self, run_id: str) -> list[HistoryRecord]:
        return [shapes.history_record(r) for r in self._conn().execute(q.SELECT_HISTORY, (run_id,))]

    @reading
    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        return select_events(self._conn(), list(internal_ids))

    @reading
    def next_due_at(self, functions: FunctionSet | None = None) -> float | None:
        if functions is None:
            row = self._conn().execute(q.NEXT_DUE).fetchone()
            return None if row is None else row[0]
        with self._read() as conn:
            times = [conn.execute(q.NEXT_DEFERRAL).fetchone()[0]]
            ids = dumps(list(functions.function_ids)).decode()
            times.append(conn.execute(q.NEXT_CRON_OF, (functions.app_id, ids)).fetchone()[0])
            times.append(conn.execute(q.NEXT_INBOX_OF, (functions.app_id, ids)).fetchone()[0])
            deadline = conn.execute(q.NEXT_START_DEADLINE_OF, (functions.app_id, ids))
            times.append(deadline.fetchone()[0])
            served = unpaused(conn, functions)
            for app_id in app_ids(conn, functions):
                for chunk in chunks(served):
                    arms = " UNION ALL ".join(
                        q.NEXT_DUE_ARM.format(n=i + 2) for i in range(len(chunk))
                    )
                    times += [r[0] for r in conn.execute(arms, (app_id, *chunk))]
        return min((t for t in times if t is not None), default=None)

    @reading
    def next_start_deadline(self, functions: FunctionSet) -> float | None:
        ids = dumps(list(functions.function_ids)).decode()
        row = self._conn().execute(q.NEXT_START_DEADLINE_OF, (functions.app_id, ids)).fetchone()
        return None if row is None else row[0]

    @reading
    def apps(self, now: float) -> list[AppRecord]:
        conn = self._conn()
        return app_records(
            conn.execute(q.CATALOG_ROWS).fetchall(),
            conn.execute(q.APP_WORKERS, (now,)).fetchall(),
            conn.execute(q.APP_INBOX).fetchall(),
        )

    @reading
    def live_workers(self, now: float) -> list[WorkerRecord]:
        return [
            WorkerRecord(r[0], r[1], tuple(loads(r[2])), r[3], r[4], r[5])
            for r in self._conn().execute(q.LIVE_WORKERS, (now,))
        ]

    @reading
    def list_skips(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        where, params = ("WHERE function_id = ?", [function_id]) if function_id else ("", [])
        rows = self._conn().execute(q.LIST_SKIPS.format(where=where), [*params, limit])
        return [SkipRecord(*r) for r in rows]

    @reading
    def sdk_apps(self, app_id: str) -> list[tuple[str, bytes]]:
        rows = self._conn().execute(q.SDK_APPS, (app_id,))
        return [(str(name), bytes(body)) for name, body in rows]

    @reading
    def paused_functions(self, app_id: str | None = None) -> set[str]:
        if app_id is None:
            return {r[0] for r in self._conn().execute(q.PAUSED)}
        return {r[0] for r in self._conn().execute(q.PAUSED_IN, (app_id,))}

    @reading
    def queue_states(self, run_ids: Sequence[str], now: float) -> list[QueueState]:
        ids = dumps(list(run_ids)).decode()
        with self._read() as conn:
            return shapes.queue_states(
                run_ids,
                conn.execute(q.QUEUE_STATES, (ids, now)).fetchall(),
                conn.execute(w.WAITS_OF_RUNS, (ids,)).fetchall(),
                lambda: [(r[1], r[3]) for r in conn.execute(q.LIVE_LEASES, (now,))],
            )

    def clock_skew(self, now: Callable[[], float] | None = None) -> float:
        """The database's clock minus this machine's: 0, a SQLite file has no clock of its own."""
        return 0.0

    def clock_refusal(self, skew: float) -> str | None:
        """None: a SQLite file is used by the machine it is on, whatever its clock."""
        return None


# -- row mapping ----------------------------------------------------------------------------------
def load_state(conn: sqlite3.Connection, run_id: str) -> RunState | None:
    """The run ``run_id`` with its events, steps and waits, as ``conn`` reads it."""
    row = conn.execute(q.SELECT_RUN, (run_id,)).fetchone()
    if row is None:
        return None
    run = shapes.run_record(row)
    events = select_events(conn, run.event_ids)
    steps = {s.hash: s for s in select_steps(conn, run_id)}
    waits = [shapes.wait_record(r) for r in conn.execute(w.WAITS_OF_RUN, (run_id,))]
    return RunState(run=run, events=events, steps=steps, waits=waits)


def select_steps(conn: sqlite3.Connection, run_id: str) -> list[StepRecord]:
    return [shapes.step_record(r) for r in conn.execute(q.SELECT_STEPS, (run_id,))]


def _newest(conn: sqlite3.Connection, query: EventFilter) -> list[Any]:
    """``LIST_EVENTS_BY_ID_RECENT``'s rows for ``query`` (its name by no index: ``+name``)."""
    where, params = shapes.event_filter(query, "?", "+name")
    below = [query.id_below, shapes.recent_scan(query) - 1, query.limit]
    listing = q.LIST_EVENTS_BY_ID_RECENT.format(where=where)
    return conn.execute(listing, [*params, *below]).fetchall()


def _few_of_name(conn: sqlite3.Connection, query: EventFilter) -> bool:
    """Whether ``query`` names a name with few events in its time window (at most ten pages;
    the cursor aside: counted in ``events_name_received`` alone, no further than one more):
    the name's index reads and sorts them for less than reading the newest events first, which
    would find none of a name absent from them (SQLite keeps no statistics to tell)."""
    if query.name is None:
        return False
    name_and_time = EventFilter(query.name, query.received_after, query.received_before)
    where, params = shapes.event_filter(name_and_time, "?")
    most = max(FEW_OF_NAME, 10 * query.limit)
    [[count]] = conn.execute(q.NAMED_AT_MOST.format(where=where), [*params, most + 1])
    return int(count) <= most


def every_statement(query: EventFilter) -> tuple[str, list[Any]]:
    """The by-id listing's second statement for ``query`` and its values: every match, by the
    name's index; without a name but from a received time on, by the received time's (the key
    named so that SQLite does not read it backward through the table for the window's events,
    the few of a quiet hour)."""
    received = query.name is None and query.received_after is not None
    id_column = "+internal_id" if received else "internal_id"
    where, params = shapes.event_filter(query, "?", id_column=id_column)
    listing = q.LIST_EVENTS_BY_ID_RECEIVED if received else q.LIST_EVENTS_BY_ID
    return listing.format(where=where), [*params, query.limit]


def _fetched(conn: sqlite3.Connection, statement: str, values: list[Any]) -> list[Any]:
    return conn.execute(statement, values).fetchall()
