"""A lease taken on PostgreSQL carries its run as the lease's own transaction read it
(``Lease.loaded``): what ``load_run`` reads once that transaction committed."""

from __future__ import annotations

from tests.store.builders import T0, commit, lease, start, step

from stepline.store.postgres import PostgresStore
from stepline.store.records import PassCommit


def test_a_lease_carries_its_run_as_load_run_reads_it(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1", "r2")
        first = {h.run_id: h for h in lease(store, "w1", T0)}
        commit(store, PassCommit("r1", first["r1"].token, steps=[step("r1", "h1", 0, output=7)]))
        store_view = {h.run_id: h for h in lease(store, "w2", T0 + 3600)}  # w1's expired
        for run_id, held in store_view.items():
            assert held.loaded is not None
            assert held.loaded() == store.load_run(run_id)
        loaded = store_view["r1"].loaded
        assert loaded is not None
        state = loaded()
        assert state is not None
        assert state.run.status == "RUNNING" and state.run.worker_id == "w2"
        assert [s.output_json for s in state.steps.values()] == [b"7"]
    finally:
        store.close()
