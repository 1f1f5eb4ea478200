"""A write transaction the server ended on a conflict with another (a deadlock, 40P01, or a
serialization failure, 40001) committed nothing: the writer makes its batch again, a few
times, and reports it unavailable only if the conflict persists. On PostgreSQL a thread drain
and a loop commit run at once in one process (as several processes always could), so two of
its own transactions may deadlock (review 2, N5): their jobs must not be reported lost."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest
from tests.store.builders import lease, start
from tests.store.test_pg_optimistic import commit_job, installed, one_batch, outputs

from stepline.errors import StoreUnavailable
from stepline.store.postgres import PostgresStore

CONFLICTS = """
CREATE SEQUENCE conflicted_inserts;
CREATE FUNCTION conflict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('conflicted_inserts') <= {times} THEN  -- a sequence: not undone with the rollback
    RAISE EXCEPTION 'a conflict' USING ERRCODE = '{code}';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER conflicted BEFORE INSERT ON steps FOR EACH ROW EXECUTE FUNCTION conflict();
"""


def _conflicting(pg_url: str, code: str, times: int) -> AbstractContextManager[None]:
    """The first ``times`` inserts into steps fail with the SQLSTATE ``code``."""
    create = CONFLICTS.format(code=code, times=times)
    return installed(
        pg_url, create, "DROP FUNCTION conflict CASCADE; DROP SEQUENCE conflicted_inserts"
    )


@pytest.mark.parametrize("code", ["40P01", "40001"])
def test_a_batch_ended_by_a_conflict_is_made_again_not_lost(
    pg_store: PostgresStore, pg_url: str, code: str
) -> None:
    """The optimistic try and the first careful one both end on the conflict (nothing
    committed): the careful transaction is made again and commits."""
    start(pg_store, "r1", "r2")
    held = lease(pg_store)
    with _conflicting(pg_url, code, times=2):
        found, writer = one_batch(pg_store, [commit_job(h, i) for i, h in enumerate(held)])
    assert found == [[], []] and writer.conflicts == 1
    assert outputs(pg_store, "r1", "r2") == {"r1": b"0", "r2": b"1"}


def test_a_conflict_that_persists_is_reported_unavailable_with_nothing_committed(
    pg_store: PostgresStore, pg_url: str
) -> None:
    start(pg_store, "r1")
    [held] = lease(pg_store)
    with _conflicting(pg_url, "40P01", times=1000):
        [found], _ = one_batch(pg_store, [commit_job(held, 1)])
    assert isinstance(found, StoreUnavailable), found
    assert outputs(pg_store, "r1") == {}
