"""A group commit on PostgreSQL that a job left unable to commit: a statement the job sent
outside every savepoint failed, and the job went on (it caught the error). The server would
take the ``COMMIT`` for a ``ROLLBACK`` without a word, and every other job of the batch would be
told its writes committed; instead the store refuses to commit (``Replay``) and the writer
applies each job alone, so each gets the outcome it would have had alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from tests.store.test_pg_optimistic import one_batch

from stepline.store.interface import Replay
from stepline.store.postgres import PostgresStore

Job = Callable[[Any], Any]


def sync(name: str) -> Job:  # a durable write that sends no NOTIFY: its COMMIT goes alone
    return lambda tx: tx.put_sdk_app("app", name, b"{}", 1.0)


def synced(store: PostgresStore) -> set[str]:
    return {name for name, _ in store.sdk_apps("app")}


def fails_outside_its_savepoints(tx: Any) -> str:
    tx.statements.flush()  # the transaction has begun on the server
    try:
        tx.statements.conn.execute("SELECT 1 / 0")
    except psycopg.Error:
        pass
    return "went on"


@pytest.mark.parametrize("last", [True, False], ids=["failing-job-last", "a-job-after-it"])
def test_a_job_that_leaves_the_transaction_failed_fails_alone(
    pg_store: PostgresStore, last: bool
) -> None:
    jobs = [sync("a1"), fails_outside_its_savepoints, *([] if last else [sync("a3")])]

    (first, failed, *rest), writer = one_batch(pg_store, jobs)
    assert (first, rest) == (None, [] if last else [None])
    assert isinstance(failed, Replay)
    # told committed: committed (the failing job last, a COMMIT was a silent ROLLBACK)
    assert synced(pg_store) == ({"a1"} if last else {"a1", "a3"})
    assert writer.transactions == len(jobs) - 1  # the other jobs, each alone


def test_a_careful_transaction_left_failed_is_not_committed(pg_store: PostgresStore) -> None:
    def left_failed() -> None:
        with pg_store.transaction() as tx:
            sync("a1")(tx)
            fails_outside_its_savepoints(tx)

    with pytest.raises(Replay):
        left_failed()
    assert synced(pg_store) == set()
