"""A new pool connection's prepared statements (``_leases.prepare``: the lease by name and the
hand-off, each prepared and executed once in a transaction it rolls back) never wait for a lock
another session holds long: they are skipped (prepared later, at their fifth execution) instead.

Before, a connection the pool made while ``migrate`` ran (the pool grows while a caller waits
for its first connection) prepared them in a transaction that locked ``queue`` and ``runs``
while the migration's held others: a deadlock, and ``migrate`` failed with "the store is
unavailable: deadlock detected" (a red gate: test_golden.py at 02:42, /tmp/red-gates/
pg-024229.log). Held here by a session that locks ``queue`` as a migration's ``ALTER TABLE``
does: before, the connection's set-up waited until that session ended."""

from __future__ import annotations

import threading

import psycopg

from stepline.store.postgres._handoffs import prepare_statements


def test_a_new_connections_prepares_do_not_wait_for_a_tables_lock(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE queue IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            done = threading.Event()

            def set_up() -> None:
                prepare_statements(conn)
                done.set()

            threading.Thread(target=set_up, daemon=True).start()
            finished = done.wait(30)  # real time: a bound on a wait that used to be for ever
            holder.execute("ROLLBACK")
            assert finished, "the new connection's set-up waited for the lock"
            assert conn.execute("SELECT 1").fetchone() == (1,)  # and it is usable
