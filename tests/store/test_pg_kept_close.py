"""Review R4 (regression test; pgstep 4dde5ab, store/postgres/_kept.py): ``PostgresStore.close()``
from another thread while a loop's commit is in flight on the connection that loop keeps.
``LoopConnections .close`` asks the loop to ``drop`` it, which, the connection being busy,
closes it and removes its reader: the commit's coroutine, armed on that reader, is never
resumed: its caller waits for ever (its outcome never told, though the server may have committed
it). Before 4dde5ab the commit went on on its pooled connection and ended when its reply came."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
from tests.store.builders import lease, start
from tests.store.test_pg_optimistic import commit_job

from stepline.store.postgres import PostgresStore

DEADLINE = 20.0


def test_closing_the_store_during_a_loop_commit_ends_that_commit(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.migrate()
    start(store, "r1")
    [held] = lease(store)
    warm = store._read_pool.getconn()  # one idle connection for the loop to take
    store._read_pool.putconn(warm)
    blocker = psycopg.connect(pg_url)  # holds the run's rows: the commit waits on the server
    blocker.execute("SELECT 1 FROM queue WHERE run_id = 'r1' FOR UPDATE")
    blocker.execute("SELECT 1 FROM runs WHERE run_id = 'r1' FOR UPDATE")
    outcome: list[Any] = []
    loop = asyncio.new_event_loop()

    async def commit() -> None:
        try:
            outcome.append(await store.commit_on_loop([commit_job(held, 1)]))
        except BaseException as exc:  # any end is fine: it must end
            outcome.append(exc)

    thread = threading.Thread(target=loop.run_until_complete, args=(commit(),), daemon=True)
    thread.start()
    try:
        _until_a_session_waits_on_a_lock(pg_url)  # the round trip is written and waits
        store.close()  # from this thread, the commit in flight on the loop's thread
        blocker.rollback()  # the server answers the commit now
        deadline = time.monotonic() + DEADLINE
        while not outcome:
            assert time.monotonic() < deadline, "the loop's commit never ended after close()"
            time.sleep(0.05)  # real time: a poll of the loop thread's outcome, under the deadline
    finally:
        blocker.close()
        thread.join(DEADLINE)
        if not thread.is_alive():
            loop.close()


def _until_a_session_waits_on_a_lock(url: str) -> None:
    """Until a session of this database waits on a lock (the commit, behind the blocker's row
    locks), polled under DEADLINE on a connection of its own in autocommit (a transaction
    would read one snapshot of the sessions): the server's state, not a guess of real time."""
    deadline = time.monotonic() + DEADLINE
    with psycopg.connect(url, autocommit=True) as observer:
        while True:
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] > 0:
                return
            assert time.monotonic() < deadline, "the loop's commit never reached the server"
            time.sleep(0.01)  # real time: a poll of the server's lock waiters, under the deadline
