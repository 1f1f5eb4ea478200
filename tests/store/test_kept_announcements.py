"""SQLite schema 27: the announcements nothing hears of a run of one trigger event cancelled by
events are one ``cancel_announcements`` row, read back as the two events they stand for. Every
reader of events shows the same events as when they were stored as event rows (the version
before): the file made now is compared with the same file whose rows are written as events by
the code that stored them before (``encoded_run_events``, ``cancelled_announcements``,
``store_unheard``): by id, in lists (filters, pages), to a worker taking another app's events
(``events_received``), the CLI, after a purge, in a copy (SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sqlitetest import file_at_version
from stepline._ids import new_id
from stepline.cli import cli
from stepline.engine._announce import store_unheard_announcements
from stepline.engine._system_events import ending_data
from stepline.errors import ConfigError
from stepline.store import SQLiteStore, Store
from stepline.store._cancelled_data import (
    FUNCTION_CANCELLED,
    FUNCTION_FINISHED,
    FUNCTION_INVOKED,
    cancelled_announcements,
)
from stepline.store._copy import copy_database
from stepline.store.capabilities import UnheardEvents
from stepline.store.postgres import PostgresStore
from stepline.store.records import (
    Admission,
    EventFilter,
    EventIngest,
    EventRecord,
    FunctionSet,
    MatcherSpec,
    NewRun,
)
from stepline.store.sqlite._derived import id_after
from stepline.store.sqlite.schema import MIGRATIONS, STOP_WORKERS_FIRST

from .builders import T0, cel_matches, event

APP = FunctionSet("shop", ("fn",))
REASON = "cancelled by an event"
ODD = {"é": ["ü", 1.5, -(2**63), 2**64 - 1, None, True], 'q"\\\n': {"x": [{}]}}
INVOKED = {"n": 1, "_inngest": {"correlation_id": "parent.hash-1", "fn_id": "fn"}}


def _run(run_id: str, order_id: str, *events: EventRecord) -> list[EventIngest]:
    """Events that start ``run_id``, cancelled by ``order/cancelled`` for ``order_id``."""
    spec = MatcherSpec(
        "order/cancelled", f'async.data.orderId == "{order_id}"', "data.orderId", order_id, None
    )
    ids = tuple(e.internal_id for e in events)
    run = NewRun(run_id, "fn", ids, admission=Admission(cancel_on=(spec,)))
    return [EventIngest(e) for e in events[:-1]] + [EventIngest(events[-1], (run,))]


def _cancel(store: SQLiteStore, now: float, *order_ids: str) -> list[str]:
    """``order/cancelled`` for each order, sent at ``now``, and the announcements of the runs
    they cancel stored as the engine stores them; their ids."""
    items = [EventIngest(event(new_id(now), "order/cancelled", {"orderId": o})) for o in order_ids]
    with store.transaction() as tx:
        results = tx.ingest(items, now, cel_matches)
        cancelled = [pair for r in results for pair in r.cancelled]
        assert isinstance(tx, UnheardEvents)
        stored = store_unheard_announcements(tx, cancelled, REASON, now, APP)
    assert stored is not None
    return [r.internal_id for r in stored]


def _history(store: SQLiteStore) -> list[str]:
    """Runs of one event (r1 of an event with a sender id and odd data, r2, r6), of two events
    (r3), started by an announcement (r4: none) and by an invoke (r5: its correlation id),
    cancelled at T0 + 1 and T0 + 2, events received in between; the announcements' ids."""
    with store.transaction() as tx:
        items = [
            *_run("r1", "o-1", EventRecord("e1", "order/created", ODD, {"u": "ñ"}, "s-1", T0)),
            *_run("r2", "o-2", event("e2")),
            *_run("r3", "o-3", event("e3a", "batch/item"), event("e3b", "batch/item")),
            *_run("r4", "o-4", event("e4", FUNCTION_FINISHED, {"run_id": "r0"})),
            *_run("r5", "o-5", event("e5", FUNCTION_INVOKED, INVOKED)),
            *_run("r6", "o-6", event("e6")),
        ]
        tx.ingest(items, T0, cel_matches)
    ids = _cancel(store, T0 + 1, "o-2", "o-1", "o-3", "o-4", "o-5")
    with store.transaction() as tx:
        tx.ingest([EventIngest(event("later", "order/created"))], T0 + 1.5, cel_matches)
    return ids + _cancel(store, T0 + 2, "o-6")


def _as_event_rows(path: Path) -> None:
    """The file as the version before would have stored its announcements: each kept row
    written as its events (the same ids, names, time) by the code that stored them, the rows
    gone."""
    store = SQLiteStore(path)
    try:
        with closing(sqlite3.connect(path)) as conn:
            kept = conn.execute("SELECT * FROM cancel_announcements").fetchall()
        with store.transaction() as tx:
            assert isinstance(tx, UnheardEvents)
            for received_at, first, run_id, reason in kept:
                run = store.get_run(run_id)
                assert run is not None
                runs = tx.encoded_run_events([run_id])
                [(names, data)] = cancelled_announcements([(run_id, run.function_id)], runs, reason)
                rows = [(i, n, data) for i, n in zip((first, id_after(first)), names, strict=False)]
                assert not rows or tx.store_unheard(rows, received_at, None)
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM cancel_announcements")
        conn.commit()


def _pages(store: Store, size: int, **filters: Any) -> list[list[tuple[Any, ...]]]:
    """``list_events`` page after page (each from the last one's place), ``size`` a page."""
    pages: list[list[tuple[Any, ...]]] = []
    after = None
    while True:
        found = store.list_events(EventFilter(after=after, limit=size, **filters))
        if not found:
            return pages
        pages.append([(s.event, s.received_at, s.duplicate) for s in found])
        after = (found[-1].received_at, found[-1].event.internal_id)


def _id_pages(store: Store, size: int, **filters: Any) -> list[list[tuple[Any, ...]]]:
    """``list_events`` by id (``id_below``), page after page from the last one's id."""
    pages: list[list[tuple[Any, ...]]] = []
    below = "z" * 26  # above every id, the tests' own ("e1", "later") too
    while True:
        found = store.list_events(EventFilter(limit=size, id_below=below, **filters))
        if not found:
            return pages
        pages.append([(s.event, s.received_at, s.duplicate) for s in found])
        below = found[-1].event.internal_id


def _views(store: Store, ids: list[str]) -> dict[str, Any]:
    """What every reader of events shows."""
    asked = [*ids, "nope", "0" * 26, new_id(T0 + 1), "e1"]
    views: dict[str, Any] = {
        "by id": store.get_events(asked),
        "runs": store.event_runs(ids),
        "one": [store.get_events([i]) for i in asked],
    }
    for name in (None, FUNCTION_FINISHED, FUNCTION_CANCELLED, "order/created"):
        for size in (1, 2, 3, 100):
            views[f"pages {name} {size}"] = _pages(store, size, name=name)
        bounds = {"received_after": T0 + 1, "received_before": T0 + 1.5}
        views[f"bounded {name}"] = _pages(store, 2, name=name, **bounds)
        for size in (1, 2, 3, 100):
            views[f"id pages {name} {size}"] = _id_pages(store, size, name=name)
        views[f"id bounded {name}"] = _id_pages(store, 2, name=name, **bounds)
        for cursor in ids[1::3]:  # from an announcement's id, the first's or the second's
            found = store.list_events(EventFilter(name=name, limit=3, id_below=cursor))
            views[f"below {name} {cursor}"] = [s.event.internal_id for s in found]
    cursors = [(T0, ""), (T0 + 1, ids[0]), (T0 + 1, ids[1]), (T0 + 1, ids[-3]), (T0 + 2, "")]
    with store.transaction() as tx:
        names = [FUNCTION_CANCELLED, "order/cancelled", FUNCTION_FINISHED]
        views["received"] = [tx.events_received(names, at, T0 + 5) for at in cursors]
        views["received cancelled"] = tx.events_received([FUNCTION_CANCELLED], cursors[1], T0 + 1)
    return views


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[SQLiteStore, SQLiteStore, list[str]]]:
    """The history stored now (kept rows) and the same file as the version before stored it."""
    now, before = tmp_path / "now.db", tmp_path / "before.db"
    store = SQLiteStore(now)
    store.migrate()
    ids = _history(store)
    store.close()
    with closing(sqlite3.connect(now)) as source, closing(sqlite3.connect(before)) as copy:
        source.backup(copy)
    _as_event_rows(before)
    kept, stored = SQLiteStore(now), SQLiteStore(before)
    yield kept, stored, ids
    kept.close()
    stored.close()


def _count(store: SQLiteStore, statement: str) -> int:
    with closing(sqlite3.connect(store.path)) as conn:
        return int(conn.execute(statement).fetchone()[0])


def test_every_reader_shows_the_rows_as_the_events_stored_before(
    files: tuple[SQLiteStore, SQLiteStore, list[str]],
) -> None:
    kept, stored, ids = files
    # r1, r2, r5, r6 kept as a row each; r4 too (it announces nothing); r3's stored as events
    assert _count(kept, "SELECT count(*) FROM cancel_announcements") == 5
    assert _count(kept, f"SELECT count(*) FROM events WHERE name = '{FUNCTION_CANCELLED}'") == 1
    assert _count(stored, f"SELECT count(*) FROM events WHERE name = '{FUNCTION_CANCELLED}'") == 5
    assert len(ids) == 10  # no id for r4's
    assert _views(kept, ids) == _views(stored, ids)


def test_their_data_is_what_the_engine_makes_of_the_run(
    files: tuple[SQLiteStore, SQLiteStore, list[str]],
) -> None:
    kept, _, ids = files
    announced = kept.get_events(ids)
    by_run = {e.data["run_id"]: e for e in announced if e.name == FUNCTION_CANCELLED}
    assert sorted(by_run) == ["r1", "r2", "r3", "r5", "r6"]
    for run_id, found in by_run.items():
        run = kept.get_run(run_id)
        assert run is not None
        payloads = [e.payload() for e in kept.get_events(list(run.event_ids))]
        assert found.data == ending_data("fn", run_id, payloads, "CANCELLED", reason=REASON)
        assert (found.user, found.id) == ({}, None)
    assert by_run["r5"].data["correlation_id"] == "parent.hash-1"
    assert by_run["r1"].data["event"]["id"] == "s-1"
    # each run's finished then cancelled, ids increasing in the order of the cancellations
    assert [e.name for e in announced] == [FUNCTION_FINISHED, FUNCTION_CANCELLED] * 5
    assert [e.data["run_id"] for e in announced[::2]] == ["r2", "r1", "r3", "r5", "r6"]
    assert ids == sorted(ids)


def _cli(store: SQLiteStore, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--json", "--db", f"sqlite:///{store.path}"])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_cli_shows_them_as_the_events_stored_before(
    files: tuple[SQLiteStore, SQLiteStore, list[str]],
) -> None:
    # what a user reads: `stepline events list` (every name, by name) and `events show` (each)
    kept, stored, ids = files
    for args in (
        ("events", "list", "--limit", "100"),
        ("events", "list", "--name", FUNCTION_CANCELLED, "--limit", "3"),
        *(("events", "show", i) for i in ids),
    ):
        assert _cli(kept, *args) == _cli(stored, *args)


def test_a_purge_deletes_them_as_it_deleted_the_events(
    files: tuple[SQLiteStore, SQLiteStore, list[str]],
) -> None:
    kept, stored, ids = files
    with kept.transaction() as tx:
        purged = tx.purge_before(T0 + 1.2, 1000)
    with stored.transaction() as tx:
        assert tx.purge_before(T0 + 1.2, 1000) == purged
    # r1-r5 with their trigger events, the five order/cancelled and 8 announcements; r6 and its
    # announcements stay
    assert (purged.runs, purged.events) == (5, 6 + 5 + 8)
    assert _views(kept, ids) == _views(stored, ids)
    assert _count(kept, "SELECT count(*) FROM cancel_announcements") == 1


def test_a_copy_stores_them_as_events(
    files: tuple[SQLiteStore, SQLiteStore, list[str]], tmp_path: Path
) -> None:
    kept, stored, ids = files
    copied = SQLiteStore(tmp_path / "copy.db")
    try:
        plan = copy_database(kept, copied)
        assert plan.counts["events"] == _count(stored, "SELECT count(*) FROM events")
        assert _count(copied, "SELECT count(*) FROM cancel_announcements") == 0
        assert _views(copied, ids) == _views(stored, ids)
        copy_database(stored, copied, replace=True)  # a replace leaves no row of before
        assert _views(copied, ids) == _views(stored, ids)
        copy_database(kept, copied, replace=True)
        assert _views(copied, ids) == _views(stored, ids)
    finally:
        copied.close()
    copy_database(stored, kept, replace=True)  # a target's rows go with its events
    assert _count(kept, "SELECT count(*) FROM cancel_announcements") == 0
    assert _views(kept, ids) == _views(stored, ids)


def test_a_copy_to_postgresql_shows_them_as_the_events_stored_before(
    files: tuple[SQLiteStore, SQLiteStore, list[str]], pg_url: str
) -> None:
    kept, stored, ids = files
    target = PostgresStore(pg_url)
    try:
        copy_database(kept, target, replace=True)
        # PostgreSQL's events_received has no upper bound (another process's clock): left out
        copied, before = _views(target, ids), _views(stored, ids)
        del copied["received cancelled"], before["received cancelled"]
        assert copied == before
    finally:
        target.close()


def test_a_sender_of_schema_26_open_across_27_stores_events_read_with_the_rows(
    files: tuple[SQLiteStore, SQLiteStore, list[str]],
) -> None:
    # a process of 26 stores announcements as event rows (INSERT_UNHEARD_EVENT): any reader of
    # 27 reads both, in their order
    kept, stored, ids = files
    late = [(new_id(T0 + 1), FUNCTION_FINISHED, b'{"run_id":"old"}')]
    for store in (kept, stored):
        with store.transaction() as tx:
            assert isinstance(tx, UnheardEvents)
            assert tx.store_unheard(late, T0 + 1, None)
    assert _views(kept, [*ids, late[0][0]]) == _views(stored, [*ids, late[0][0]])


def test_migration_27_is_refused_while_a_worker_of_26_is_alive(tmp_path: Path) -> None:
    # a worker of 26 taking another app's event would not see an announcement kept as a row
    # that cancels the run it starts (``events_received``)
    assert 27 in STOP_WORKERS_FIRST
    path = tmp_path / "s.db"
    file_at_version(path, 26, ("w-old", time.time() + 600))
    store = SQLiteStore(path)
    try:
        with pytest.raises(ConfigError) as refused:
            store.migrate()
        assert "w-old" in str(refused.value)
        store.migrate(force=True)
        with closing(sqlite3.connect(path)) as conn:
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        assert version == (len(MIGRATIONS),)
    finally:
        store.close()


def test_rows_of_one_millisecond_are_listed_by_id_whatever_their_received_order(
    tmp_path: Path,
) -> None:
    # two cancellations in one millisecond, the later one received first (a clock's step back):
    # its announcements' ids are the greater (new_ids is monotonic within a millisecond), so a
    # list by id must read past the row received last to find them
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        with store.transaction() as tx:
            tx.ingest(
                [*_run("r1", "o-1", event("e1")), *_run("r2", "o-2", event("e2"))], T0, cel_matches
            )
        first = _cancel(store, T0 + 1.0004, "o-1")
        second = _cancel(store, T0 + 1.0001, "o-2")
        assert max(first) < min(second)
        every = sorted(
            (s.event.internal_id for s in store.list_events(EventFilter())), reverse=True
        )
        for size in (1, 2, 3):
            paged = [e for page in _id_pages(store, size) for (e, _, _) in page]
            assert [e.internal_id for e in paged] == every
        assert _count(store, "SELECT count(*) FROM cancel_announcements") == 2
    finally:
        store.close()
