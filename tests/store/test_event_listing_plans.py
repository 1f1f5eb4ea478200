"""The SQL stores' listing of events by id (Inngest's ``GET /v1/events``: a name, the last hour,
newest first by internal id) reads a bounded number of rows whatever the events table holds
(asserted on the plans, not on time)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.store.builders import T0, cel_matches, event

import pgtest
from stepline.store import _rows as shapes
from stepline.store.postgres import PostgresStore
from stepline.store.postgres import _read_queries as rq
from stepline.store.records import EventFilter, EventIngest
from stepline.store.sqlite import queries as q
from stepline.store.sqlite import reads as sqlite_reads
from stepline.store.sqlite.reads import FEW_OF_NAME
from stepline.store.sqlite.reads import every_statement as sqlite_every
from stepline.store.sqlite.store import SQLiteStore

OLD, NEW = 1000, 5000  # events of a name sent long ago, then of another name


def test_a_name_absent_from_the_newest_events_is_listed_without_reading_the_table() -> None:
    """The planner read the primary key backward, filtering by name and time, for a name
    whose events are not among the newest (it takes the name and the time for independent):
    the whole table to answer that the name had no event in the last hour (100,000 rows, 27 ms
    in a table of 100,000 events). The listing now reads the newest events below the cursor
    (``recent_scan``), then, if they hold too few, the name's events in the window by its
    index, sorted.

    Measured in a database of its own (``pgtest.own_database``, as ``test_pg_plans``'s backlog
    tests): in the process's shared one, emptied by DELETE, the bitmap index scans counted
    the index entries of earlier tests' events, dead but not removable while any session
    holds an old snapshot (20,000 such events of the name in the window, deleted with an xid
    held open: 20,000 rows against 2,010), and those tests' rows steer the plan."""
    pg_url = pgtest.own_database("stepline_plans")
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        with store.transaction() as tx:
            items = [EventIngest(event(f"a{n:05d}", "old/name"), ()) for n in range(OLD)]
            tx.ingest(items, T0, cel_matches)
        with store.transaction() as tx:
            items = [EventIngest(event(f"b{n:05d}", "x/other"), ()) for n in range(NEW)]
            tx.ingest(items, T0 + 7200, cel_matches)
        hour = EventFilter(name="old/name", received_after=T0 + 3600, id_below="z", limit=20)
        assert store.list_events(hour) == []
        quiet = EventFilter(received_after=T0 + 7200 + 3600, id_below="z", limit=20)
        assert store.list_events(quiet) == []  # no name, a quiet last hour
        ever = store.list_events(dataclasses.replace(hour, received_after=None))
        assert [e.event.internal_id for e in ever] == [f"a{n:05d}" for n in range(999, 979, -1)]
    finally:
        store.close()
    where, params = shapes.event_filter(hour, "%s")
    quiet_where, quiet_params = shapes.event_filter(quiet, "%s")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE events")
        # a planner that prices an index's pages high finds reading the whole table cheaper:
        # the name's listing must not depend on its costs (it read all 6,000 rows in one gate,
        # with the default costs and the table as the tests before it left it; at 20 always)
        conn.execute("SET random_page_cost = 20")
        for statement, values, settings in (  # the statements each listing runs, as it sends them
            (
                rq.LIST_EVENTS_BY_ID_RECENT.format(where=where),
                [hour.id_below, shapes.recent_scan(hour), *params, hour.limit],
                None,
            ),
            (rq.LIST_EVENTS_BY_ID.format(where=where), [*params, hour.limit], rq.BY_INDEX),
            (  # without a name: as the planner chooses (single columns' statistics)
                rq.LIST_EVENTS_BY_ID_PLANNED.format(where=quiet_where),
                [*quiet_params, quiet.limit],
                None,
            ),
        ):
            explain = "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) "
            with conn.transaction():
                if settings is not None:
                    conn.execute(settings)
                [[plan]] = conn.execute(explain + statement, values).fetchall()
            widest = max(pgtest.rows_touched(plan[0]["Plan"]))
            assert widest <= shapes.recent_scan(hour) + 10, (statement, plan)


def test_sqlite_lists_a_name_by_id_from_the_newest_events_without_sorting(tmp_path: Path) -> None:
    """SQLite read a name's events by its index and sorted all of them by id for every page
    (35-40 ms a page of 20 for a name of 50,000 events among 100,000; 0.2 ms now): the first
    statement reads the key backward from the cursor, the name compared by no index."""
    path = tmp_path / "events.sqlite"
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    hour = EventFilter(name="old/name", received_after=T0 + 3600, id_below="z", limit=20)
    where, params = shapes.event_filter(hour, "?", "+name")
    statement = q.LIST_EVENTS_BY_ID_RECENT.format(where=where)
    values = [*params, hour.id_below, shapes.recent_scan(hour) - 1, hour.limit]
    with sqlite3.connect(path) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, values)]
    assert plan[0].startswith("SEARCH events USING INDEX sqlite_autoindex_events_1"), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_sqlite_lists_the_last_hour_by_id_from_its_events_when_the_newest_hold_too_few(
    tmp_path: Path,
) -> None:
    """``GET /v1/events`` after a quiet hour: the newest events below the cursor hold none of
    the window's, and the second statement read the whole key backward for them (the key
    satisfies its order): it reads the window's events by ``events_received``, then sorts."""
    path = tmp_path / "events.sqlite"
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    hour = EventFilter(received_after=T0 + 3600, id_below="z", limit=20)
    statement, values = sqlite_every(hour)
    with sqlite3.connect(path) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, values)]
    assert plan[0].startswith("SEARCH events USING INDEX events_received (received_at>?)"), plan


def test_sqlite_lists_a_name_with_few_events_in_the_window_by_its_index_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with few events in the filter's window (FEW_OF_NAME; counted in its index, no
    further than one more) is read by that index and sorted at once: reading the 2,000 newest
    events first found none of an absent name (0.6 ms a page, 0.03 ms by the index)."""
    store = SQLiteStore(tmp_path / "events.sqlite")
    store.migrate()
    newest: list[EventFilter] = []
    first = sqlite_reads._newest

    def counted(conn: sqlite3.Connection, query: EventFilter) -> list[Any]:
        newest.append(query)
        return first(conn, query)

    monkeypatch.setattr(sqlite_reads, "_newest", counted)
    try:
        dense = [EventIngest(event(f"d{n:05d}", "x/dense"), ()) for n in range(FEW_OF_NAME + 1)]
        rare = [EventIngest(event(f"r{n:05d}", "x/rare"), ()) for n in range(FEW_OF_NAME)]
        with store.transaction() as tx:
            tx.ingest([*rare, *dense], T0, cel_matches)
        for name, read_first in (("x/rare", False), ("x/dense", True), ("x/none", False)):
            newest.clear()
            found = store.list_events(EventFilter(name=name, id_below="z", limit=20))
            assert len(found) == (0 if name == "x/none" else 20)
            assert bool(newest) is read_first, name
    finally:
        store.close()
