"""A round trip whose results are read before the commit (``Statements.run_all``, and ``run``
after queued writes), and a read of several statements (``PostgresReads._read``), is written at
once by ``_pipeline.send_all`` with what was queued, not through psycopg's pipeline (which
wrote each statement as it was executed, for about five times this process's CPU): its results
read as from psycopg's cursors."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tests.store.builders import SERVED, T0, lease, start

from stepline.store.postgres import PostgresStore
from stepline.store.postgres._statements import Statements


def test_a_read_after_queued_writes_has_its_rows_and_row_count(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list):
            s.write("CREATE TEMP TABLE t (n int) ON COMMIT DROP")
            s.write("INSERT INTO t VALUES (1), (2), (3)")
            assert s.run("UPDATE t SET n = n + 10 WHERE n > %s", (1,)).rowcount == 2
            s.write("INSERT INTO t VALUES (4)")
            found, none, counted = s.run_all(
                [
                    ("SELECT n FROM t ORDER BY n", None),
                    ("SELECT n FROM t WHERE n > 100", None),
                    ("DELETE FROM t WHERE n > %s", (10,)),
                ]
            )
            assert found.rowcount == 4
            assert found.fetchone() == (1,)
            assert found.fetchall() == [(4,), (12,), (13,)]
            assert found.fetchone() is None
            assert (none.rowcount, none.fetchone(), list(none)) == (0, None, [])
            assert counted.rowcount == 2
            with pytest.raises(psycopg.ProgrammingError):
                counted.fetchall()  # as psycopg's cursor: a DELETE without RETURNING


def test_a_lease_attempts_reads_are_one_write_of_our_own(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1", "r2")

        def refused(*_: Any, **__: Any) -> Any:
            raise AssertionError("psycopg's pipeline was entered")

        monkeypatch.setattr(psycopg.Connection, "pipeline", refused)
        assert store.next_due_at(SERVED) == T0  # two statements: a read of its own
        assert {held.run_id for held in lease(store, "w1", T0)} == {"r1", "r2"}
    finally:
        store.close()
