"""An optimistic group commit whose ``COMMIT`` round trip fails may have committed all the same
(a backend terminated between its commit's flush and its reply, a FATAL after "the transaction
has already committed locally"): its jobs get ``StoreUnavailable``, as a careful transaction's
would, and the batch is never made again (that would apply its jobs twice). A statement the
server refused before the ``COMMIT`` still makes the batch again (``Replay``)."""

from __future__ import annotations

from typing import Any

import psycopg
from tests.store.builders import lease, start
from tests.store.test_pg_optimistic import commit_job, one_batch

from stepline.errors import StoreError, StoreUnavailable
from stepline.store.postgres import PostgresStore


def test_an_error_after_the_commit_is_unavailable_not_replayed(pg_store: PostgresStore) -> None:
    start(pg_store, "r1")
    [held] = lease(pg_store)

    def crash_after_the_commit(tx: Any) -> None:
        # the last job: the next round trip is the batch's one (BEGIN ... COMMIT); it commits,
        # then the server's answer is an error, as from a backend terminated after its commit's
        # flush because another backend crashed (57P02)
        statements = tx.statements
        flush = statements.flush

        def flushed() -> None:
            flush()
            raise psycopg.errors.CrashShutdown("terminating connection: another process crashed")

        statements.flush = flushed

    found, writer = one_batch(pg_store, [commit_job(held, 1), crash_after_the_commit])
    assert writer.replays == 0, found
    assert all(isinstance(outcome, StoreUnavailable) for outcome in found), found
    assert [s.output_json for s in pg_store.get_steps("r1")] == [b"1"]  # committed once


def test_a_statement_refused_before_the_commit_still_replays(pg_store: PostgresStore) -> None:
    start(pg_store, "r1")
    [held] = lease(pg_store)

    def refused(tx: Any) -> None:  # queued, sent with the COMMIT: fails before it
        with tx.savepoint():
            tx.statements.write("SELECT 1 / 0")

    found, writer = one_batch(pg_store, [commit_job(held, 1), refused])
    assert writer.replays == 1
    assert found[0] == []  # made again carefully: the pass commit stands alone
    assert isinstance(found[1], StoreError) and "division by zero" in str(found[1])
    assert [s.output_json for s in pg_store.get_steps("r1")] == [b"1"]
