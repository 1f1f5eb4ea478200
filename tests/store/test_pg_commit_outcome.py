"""An optimistic group commit whose ``COMMIT`` round trip fails may have committed all the same
(a backend terminated between its commit's flush and its reply, a FATAL after "the transaction
has already committed locally"): its jobs get ``StoreUnavailable``, as a careful transaction's
would, and the batch is never made again (that would apply its jobs twice). A statement the
server refused before the ``COMMIT`` still makes the batch again (``Replay``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
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


def _interrupted(store: PostgresStore, job: Callable[[Any], None]) -> Any:
    """The statements of an optimistic transaction of ``job`` (which interrupts its
    ``COMMIT``'s round trip) once the ``KeyboardInterrupt`` went through it."""
    seen: list[Any] = []

    def transaction() -> None:
        with store.optimistic_transaction() as tx:
            seen.append(tx.statements)
            job(tx)

    with pytest.raises(KeyboardInterrupt):
        transaction()
    return seen[0]


def test_an_interrupt_during_the_commit_round_trip_leaves_its_outcome_unknown(
    pg_store: PostgresStore,
) -> None:
    """Ctrl-C (``KeyboardInterrupt``) while the ``COMMIT``'s round trip is in flight: psycopg
    cancels the statement, too late for a commit already flushed, and the reply is lost. The
    interrupt is raised as it is (never turned into another error), and the transaction says
    that it may have committed (``maybe_committed``), as for a connection lost then (before,
    only a psycopg error set it: the transaction read as surely not committed). Here the
    interrupt comes once the commit's reply was read, where the transaction did commit."""
    start(pg_store, "r1")
    [held] = lease(pg_store)

    def job(tx: Any) -> None:
        commit_job(held, 1)(tx)
        flush = tx.statements.flush

        def interrupted() -> None:
            flush()
            raise KeyboardInterrupt

        tx.statements.flush = interrupted

    assert _interrupted(pg_store, job).maybe_committed
    assert [s.output_json for s in pg_store.get_steps("r1")] == [b"1"]  # it had committed


def test_an_interrupt_before_the_commit_of_a_transaction_with_begin_did_not_commit(
    pg_store: PostgresStore,
) -> None:
    """The converse: a transaction that sent ``BEGIN`` (its first round trip a read) and is
    interrupted before its ``COMMIT`` ran is still open: surely not committed (rolled back)."""
    start(pg_store, "r1")
    [held] = lease(pg_store)

    def job(tx: Any) -> None:
        tx.statements.run("SELECT 1")  # BEGIN and a read: the transaction is open
        commit_job(held, 1)(tx)

        def interrupted() -> None:
            raise KeyboardInterrupt  # before anything of the COMMIT's round trip was sent

        tx.statements.flush = interrupted

    assert not _interrupted(pg_store, job).maybe_committed
    assert pg_store.get_steps("r1") == []
