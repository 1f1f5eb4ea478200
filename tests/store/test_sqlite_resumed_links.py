"""SQLite migration 23: the runs an event resumed are read from their WAIT_MATCHED rows (which
name the event), so an ingest writes no ``run_events`` row for a resumed run; the rows a process
of the version before writes are read as well, the retention keeps such an event while its run
lives, and a copy carries the links to a store that reads them in ``run_events``."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from stepline.store import SQLiteStore
from stepline.store._copy import copy_database
from stepline.store.memory import MemoryStore
from stepline.store.postgres import PostgresStore
from stepline.store.records import RESUMED, EventIngest, EventRecord

from .builders import T0, cel_matches, lease_run, start, suspend_on_wait, wait

DAY = 86400.0


def _waiting(store: SQLiteStore | MemoryStore, *run_ids: str) -> None:
    for run_id in run_ids:
        start(store, run_id)
        pending = wait(run_id, f"w-{run_id}", f'async.data.orderId == "{run_id}"')
        suspend_on_wait(store, lease_run(store, run_id), pending)


def _pay(store: SQLiteStore, internal_id: str, order_id: str, now: float = T0 + 1) -> None:
    paid = EventRecord(internal_id, "payment/received", {"orderId": order_id}, {}, None, T0)
    with store.transaction() as tx:
        [result] = tx.ingest([EventIngest(paid)], now, cel_matches)
    assert result.resumed_run_ids == (order_id,)


def _resumed_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM run_events WHERE effect = 'resumed'").fetchone()[0]
        )


def _links(store: SQLiteStore | PostgresStore, *event_ids: str) -> set[tuple[str, str, str]]:
    return {(r.event_id, r.effect, r.run.run_id) for r in store.event_runs(list(event_ids))}


def test_a_resumed_run_is_linked_to_its_event_by_its_wait_matched_row(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        _waiting(store, "r1", "r2")
        _pay(store, "p-1", "r1")
        _pay(store, "p-2", "r2")
        assert _links(store, "p-1", "p-2") == {("p-1", RESUMED, "r1"), ("p-2", RESUMED, "r2")}
        assert _links(store, "p-1") == {("p-1", RESUMED, "r1")}
    finally:
        store.close()
    assert _resumed_rows(tmp_path / "s.db") == 0


def test_a_link_the_version_before_also_wrote_is_read_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        _waiting(store, "r1")
        _pay(store, "p-1", "r1")
        with closing(sqlite3.connect(tmp_path / "s.db")) as conn, conn:
            # as a process of the version before 23 writes it, with the same WAIT_MATCHED row
            conn.execute("INSERT INTO run_events VALUES ('p-1', 'r1', 'resumed')")
        [link] = store.event_runs(["p-1"])
        assert (link.event_id, link.effect, link.run.run_id) == ("p-1", RESUMED, "r1")
    finally:
        store.close()


def test_the_retention_keeps_an_event_that_resumed_a_run_while_the_run_lives(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        _waiting(store, "r1")
        _pay(store, "p-1", "r1")
        with store.transaction() as tx:
            tx.purge_before(T0 + 30 * DAY, 100)
        assert [e.internal_id for e in store.get_events(["p-1"])] == ["p-1"]
    finally:
        store.close()


def test_a_copy_to_postgresql_keeps_the_runs_each_event_resumed(
    tmp_path: Path, pg_url: str
) -> None:
    source = SQLiteStore(tmp_path / "s.db")
    target = PostgresStore(pg_url)
    try:
        source.migrate()
        _waiting(source, "r1")
        _pay(source, "p-1", "r1")
        copy_database(source, target, replace=True)
        assert _links(target, "p-1") == {("p-1", RESUMED, "r1")}
    finally:
        source.close()
        target.close()
