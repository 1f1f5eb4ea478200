"""Review R3 (regression test; pgstep 4dde5ab, store/postgres/_kept.py): each event loop that made
a commit on its loop keeps a connection of the read pool until it shuts down
(``shutdown_asyncgens``) or closes. Loops that stay open between uses (a thread's loop reused
for each call, ``loop.run_until_complete(app.send_async(...))``) each pin one: with as many such
loops as ``max_connections`` (10 by default), the read pool has nothing left for the thread's
path (the writer thread's ``optimistic_transaction`` and every read go through it), which waits
for the pool's timeout and fails. Before 4dde5ab a loop took a connection only for its commit."""

from __future__ import annotations

import asyncio

from tests.store.builders import lease, start
from tests.store.test_pg_optimistic import commit_job, outputs

from stepline.store.postgres import PostgresStore

LOOPS = 10  # PostgresStore's default max_connections


def test_open_loops_that_committed_once_leave_the_writer_thread_a_connection(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, connect_timeout=2)  # the pool's wait: 2 s, not 10
    store.migrate()
    loops = [asyncio.new_event_loop() for _ in range(LOOPS)]
    try:
        runs = [f"r{i}" for i in range(LOOPS + 1)]
        start(store, *runs)
        held = {h.run_id: h for h in lease(store)}
        warm = [store._read_pool.getconn() for _ in range(LOOPS)]  # the pool at its size, idle
        for conn in warm:
            store._read_pool.putconn(conn)
        for i, loop in enumerate(loops):  # each loop: one commit, then idle (kept open)
            job = commit_job(held[runs[i]], i)
            assert loop.run_until_complete(store.commit_on_loop([job])) == [[]]
        # the writer thread's path (no loop): a transaction on the read pool
        with store.optimistic_transaction() as tx:
            commit_job(held[runs[LOOPS]], LOOPS)(tx)
        assert outputs(store, runs[LOOPS]) == {runs[LOOPS]: str(LOOPS).encode()}
    finally:
        for loop in loops:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        store.close()
