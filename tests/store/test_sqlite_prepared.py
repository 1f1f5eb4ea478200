"""SQLite prepares each statement of a worker's lease path once per connection, not again at
every run: a parameter compared with a column that a partial index compares with a constant
(queue_unowned: ``app_id = ''``) makes SQLite re-prepare the statement whenever it is bound
again, which cost the lease query ten times its own run (``queries.DUE_ARM``)."""

from __future__ import annotations

import sqlite3

import pytest
from tests.store.builders import T0, TTL, commit, ingest, trigger

from stepline.store.records import FunctionSet, PassCommit, RunEnd
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
