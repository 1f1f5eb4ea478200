"""SQLite's cancel matchers across migration 22 (the matchers kept by run)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import sqlitetest
from stepline.store import SQLiteStore
from stepline.store.records import EventIngest, EventRecord

from .builders import T0, cel_matches

# INSERT_MATCHER as a process of the version before 22 writes it (the same columns)
_OLD_MATCHER = (
    "INSERT INTO matchers (matcher_id, run_id, event_name, expression, index_path, "
    "index_value, expires_at, created_at) VALUES (?, ?, 'order/cancelled', ?, ?, ?, NULL, ?)"
)


def _file_at_21(path: Path) -> None:
    """A file at migration 21: runs r1-r3 QUEUED, r1 and r2 with an indexed cancel matcher
    each, r3 with an unindexed one."""
    sqlitetest.file_at_version(path, 21)
    with closing(sqlite3.connect(path)) as conn:
        for run_id in ("r1", "r2", "r3"):
            conn.execute(
                "INSERT INTO runs (run_id, function_id, status, event_ids, created_at) "
                "VALUES (?, 'fn', 'QUEUED', '[]', ?)",
                (run_id, T0),
            )
            conn.execute("INSERT INTO queue (run_id, due_at) VALUES (?, ?)", (run_id, T0))
        conn.execute(
            "INSERT INTO matcher_paths (event_name, path) VALUES (?, ?)",
            ("order/cancelled", "data.orderId"),
        )
        for matcher_id, run_id, order in (("m1", "r1", "o1"), ("m2", "r2", "o2")):
            expression = f'async.data.orderId == "{order}"'
            conn.execute(_OLD_MATCHER, (matcher_id, run_id, expression, "data.orderId", order, T0))
        conn.execute(_OLD_MATCHER, ("m3", "r3", 'async.data.kind == "all"', None, None, T0))
        conn.commit()


def _matchers(path: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return sorted(conn.execute("SELECT matcher_id, run_id FROM matchers").fetchall())


def _cancel(store: SQLiteStore, event_id: str, data: dict[str, str], at: float) -> list[str]:
    event = EventRecord(event_id, "order/cancelled", data, {}, None, at)
    with store.transaction() as tx:
        [result] = tx.ingest([EventIngest(event)], at, cel_matches)
    return sorted(run_id for run_id, _ in result.cancelled)


def test_cancel_matchers_kept_before_migration_22_still_cancel_their_runs(tmp_path: Path) -> None:
    # migration 22 keys the matchers by run (the key serves the deletes of a run's matchers:
    # no matchers_run index to write; the lookup index covers a candidate); the matchers a file
    # holds are carried over, and those a process of the version before writes (the same
    # columns) are found and deleted as well
    path = tmp_path / "s.db"
    _file_at_21(path)
    store = SQLiteStore(path)
    store.migrate()
    with closing(sqlite3.connect(path)) as conn:
        indexes = {r[1]: r[3] for r in conn.execute("PRAGMA index_list(matchers)")}
        [pk] = [name for name, origin in indexes.items() if origin == "pk"]
        key = [r[2] for r in conn.execute(f"PRAGMA index_info({pk})")]
        lookup = [r[2] for r in conn.execute("PRAGMA index_xinfo(matchers_lookup)")]
    assert set(indexes) == {pk, "matchers_lookup"}  # no matchers_run
    assert key == ["run_id", "matcher_id"]
    columns = ["event_name", "index_path", "index_value", "expires_at", "created_at"]
    assert lookup == [*columns, "expression", "run_id", "matcher_id"]  # covers a candidate
    assert _matchers(path) == [("m1", "r1"), ("m2", "r2"), ("m3", "r3")]
    with closing(sqlite3.connect(path)) as conn:  # a process of the version before
        conn.execute(
            "INSERT INTO runs (run_id, function_id, status, event_ids, created_at) "
            "VALUES ('r4', 'fn', 'QUEUED', '[]', ?)",
            (T0,),
        )
        conn.execute(
            _OLD_MATCHER, ("m4", "r4", 'async.data.orderId == "o4"', "data.orderId", "o4", T0)
        )
        conn.commit()

    assert _cancel(store, "e1", {"orderId": "o1"}, T0 + 1) == ["r1"]
    assert _matchers(path) == [("m2", "r2"), ("m3", "r3"), ("m4", "r4")]
    assert _cancel(store, "e2", {"orderId": "o4"}, T0 + 2) == ["r4"]
    assert _cancel(store, "e3", {"orderId": "o9", "kind": "all"}, T0 + 3) == ["r3"]
    assert _matchers(path) == [("m2", "r2")]
    statuses = {r: s.run.status for r in ("r1", "r2", "r3", "r4") if (s := store.load_run(r))}
    assert statuses == {"r1": "CANCELLED", "r2": "QUEUED", "r3": "CANCELLED", "r4": "CANCELLED"}
    store.close()
