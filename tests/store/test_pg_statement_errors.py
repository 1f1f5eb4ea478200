"""A queued write that fails is sent with a later statement, maybe in another savepoint (another
verb of the same job): its error is handled by the savepoint that holds the failed statement,
never by a later one that began after it (``store/postgres/_statements.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from tests.store.test_pg_statements import FAILS, PAUSE, paused, verb

from stepline.engine.writer import BatchWriter
from stepline.store.postgres import PostgresStore
from stepline.store.postgres._statements import Statements


def catching_job(s: Statements) -> None:
    """A job whose first verb shares its savepoint and queues a failing write; its second
    verb's read sends it. The job catches what the second verb raises and goes on."""
    with s.savepoint():  # the job's
        verb(s, "verb 1", FAILS)  # queued only
        try:
            verb(s, "verb 2", then="SELECT 1")  # sends verb 1's write
        except Exception:  # a job catching a verb's error: verb 1's is not its to see
            pytest.fail("verb 2 saw verb 1's error")


def sibling_job(s: Statements) -> None:
    """A job with two verbs whose savepoints have the same name, the first one's write
    failing when the second reads."""
    with s.savepoint():  # the job's
        s.write(PAUSE, ("the job's own",))
        verb(s, "verb 1", FAILS)  # a savepoint of its own, released (queued)
        verb(s, "verb 2", then="SELECT 1")
        s.write(PAUSE, ("never",))


def test_an_error_of_a_verb_that_ended_is_the_jobs_and_the_job_goes_on(pg_url: str) -> None:
    """Verb 1's write fails when verb 2 reads: the job's savepoint (which holds verb 1's
    write) is rolled back and raises the real error; the transaction goes on."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list):
            with pytest.raises(psycopg.errors.DivisionByZero):
                catching_job(s)
            verb(s, "after")
    assert paused(pg_url) == {"after"}


def test_a_sibling_verbs_error_does_not_roll_back_to_the_siblings_savepoint(pg_url: str) -> None:
    """Verb 2 does not roll back to verb 1's savepoint of the same name (its RELEASE was
    never executed); the job's savepoint handles the error."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        s = Statements(conn)
        with s.transaction(list):
            verb(s, "kept")
            with pytest.raises(psycopg.errors.DivisionByZero):
                sibling_job(s)
            verb(s, "after")
    assert paused(pg_url) == {"kept", "after"}


def test_a_job_that_catches_a_later_verbs_error_gets_the_real_error(pg_url: str) -> None:
    """Through the group-commit writer: the job catches what a verb raises and goes on (as
    engine/_attempts.py does); the job fails with the real error, not InFailedSqlTransaction,
    and the other jobs of the batch commit."""
    store = PostgresStore(pg_url)

    def job(tx: Any) -> str:
        s = tx.statements
        with tx.savepoint():
            verb(s, "verb 1", FAILS)
            try:
                verb(s, "verb 2", then="SELECT 1")
            except Exception:
                verb(s, "fallback")
        return "done"

    def other(name: str) -> Any:
        return lambda tx: verb(tx.statements, name)

    async def jobs() -> list[Any]:
        writer = BatchWriter(store)
        try:
            found = [other("first"), job, other("last")]
            results = await asyncio.gather(*map(writer.submit, found), return_exceptions=True)
            assert writer.transactions == 1
            return results
        finally:
            writer.close()

    try:
        first, failed, last = asyncio.run(jobs())
        assert "division by zero" in str(failed), failed
        assert first is None and last is None
    finally:
        store.close()
    assert paused(pg_url) == {"first", "last"}
