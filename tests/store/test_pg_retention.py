"""Retention on PostgreSQL takes no long locks: while one purge's transaction is open, other
processes commit passes, ingest events, lease runs and purge further, none of them waiting for
it (a lock wait past ``lock_timeout`` would raise)."""

from __future__ import annotations

from stepline.store.postgres import PostgresStore
from stepline.store.records import EventIngest, NewRun, PassCommit, StepRecord

from .builders import T0, commit, event, ingest, lease_run
from .test_retention import _ended_runs


def test_a_purge_in_flight_blocks_no_other_writer(pg_url: str) -> None:
    first = PostgresStore(pg_url)
    # any lock wait longer than this fails the verb that waited (StoreUnavailable)
    other = PostgresStore(pg_url + "?options=-c%20lock_timeout%3D5000")
    try:
        first.migrate()
        run_ids = _ended_runs(first, 20)
        for i in range(15):
            ingest(first, EventIngest(event(f"lone-{i}", sender_id=f"s-{i}")), now=T0)
        ingest(first, EventIngest(event("e-live"), (NewRun("live", "f", ("e-live",)),)), now=T0)
        held = lease_run(first, "live", now=T0 + 5)
        with first.transaction() as purging:
            purged = purging.purge_before(T0 + 2, 10)
            assert (purged.runs, purged.events) == (10, 10)
            assert purging.purge_expired(T0 + 2 * 86400, 10) == 10
            # meanwhile, in other transactions: a pass commits, an event is ingested, a run is
            # leased, expired state and the other ended runs are purged
            step = StepRecord("live", "h", "s", "run", 0, "COMPLETED", b"2", attempts=1)
            commit(other, PassCommit("live", held.token, steps=[step]), T0 + 6)
            ingest(other, EventIngest(event("e-new"), (NewRun("new", "f", ("e-new",)),)), now=T0)
            lease_run(other, "new", now=T0 + 7)
            with other.transaction() as tx:
                beside = tx.purge_before(T0 + 2, 100)
                assert beside.runs == 10  # the ones the first purge did not take
                assert tx.purge_expired(T0 + 2 * 86400, 100) == 5
        with other.transaction() as tx:
            rest = tx.purge_before(T0 + 2, 100)
            assert rest.runs == 0
        assert all(first.get_run(r) is None for r in run_ids)
        assert first.get_events([f"lone-{i}" for i in range(15)]) == []
        live = first.get_run("live")
        assert live is not None
        assert [s.status for s in first.get_steps("live")] == ["COMPLETED"]
    finally:
        first.close()
        other.close()
