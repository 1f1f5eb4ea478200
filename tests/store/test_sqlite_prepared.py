"""SQLite prepares each statement of a worker's lease path once per connection, not again at
every run: a parameter compared with a column that a partial index compares with a constant
(queue_unowned: ``app_id = ''``) makes SQLite re-prepare the statement whenever it is bound
again, which cost the lease query ten times its own run (``queries.DUE_ARM``)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from tests.store.builders import T0, TTL, commit, ingest, trigger

from stepline.store.records import FunctionSet, PassCommit, RunEnd, RunFilter
from stepline.store.search_records import RunClause
from stepline.store.sqlite import SQLiteStore

SERVED = FunctionSet("app", ("fn", "other"))


def _prepared_again(conn: sqlite3.Connection) -> list[str]:
    """The statements ``conn`` has re-prepared (the ``sqlite_stmt`` table of its statements)."""
    try:
        rows = conn.execute("SELECT sql FROM sqlite_stmt WHERE reprep > 0").fetchall()
    except sqlite3.OperationalError:  # a library built without SQLITE_ENABLE_STMTVTAB
        pytest.skip("this SQLite library has no sqlite_stmt table")
    return [" ".join(sql.split())[:80] for (sql,) in rows]


def test_leasing_and_looking_for_due_work_reuse_their_prepared_statements(
    sqlite_store: SQLiteStore,
) -> None:
    for i in range(4):
        now = T0 + i
        ingest(sqlite_store, trigger(f"r{i}"), now=now)
        assert sqlite_store.next_due_at(SERVED) is not None
        with sqlite_store.transaction() as tx:
            [held] = tx.lease_due("w1", now, 1, TTL, SERVED)
        commit(sqlite_store, PassCommit(held.run_id, held.token, end=RunEnd("COMPLETED")), now)
        assert sqlite_store.next_due_at(SERVED) is None
    with sqlite_store.transaction() as tx:
        assert _prepared_again(tx._c) == []  # type: ignore[attr-defined]
    assert _prepared_again(sqlite_store._conn()) == []


# a value for each of a runs filter's fields (the status apart)
_FILTERED: dict[str, Any] = {
    "function_id": "fn",
    "app_id": "app",
    "event_id": "ev-r0",
    "waiting_for_worker_at": T0,
    "created_after": T0,
    "created_before": T0 + 10,
    "after": (T0 + 10, "r9"),
    "newer_than": (T0 - 1, ""),
}
_CLAUSES = (
    (),
    (RunClause("run.status", (), "==", "QUEUED"),),
    (RunClause("event.data", ("n",), "==", 1), RunClause("queue.due_at", (), "<=", T0)),
)


@pytest.mark.parametrize("status", [None, "QUEUED", "COMPLETED"])
def test_listing_counting_and_searching_runs_reuse_their_prepared_statements(
    sqlite_store: SQLiteStore, status: str | None
) -> None:
    """The runs list, its count and a search's window, with each filter alone and all at once:
    a status compared as ``status = ?`` made each of them re-prepare at every call (the partial
    index runs_start_deadline's ``status = 'QUEUED'``: ``queries.STATUS_MARK``)."""
    ingest(sqlite_store, trigger("r0"), trigger("r1"), now=T0)
    conn = sqlite_store._conn()  # the reads' connection of this thread
    shapes = [{}, *({name: value} for name, value in _FILTERED.items()), dict(_FILTERED)]
    for shape in shapes:
        query = RunFilter(status=status, **shape)
        sqlite_store.list_runs(query)
        sqlite_store.count_runs(query)
        for clauses in _CLAUSES:
            sqlite_store.search_window(query, 10, clauses)
        assert _prepared_again(conn) == [], shape  # (SQLite keeps 128 statements prepared)
