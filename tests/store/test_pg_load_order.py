"""A run loaded on PostgreSQL (``load_run``, and a lease's ``loaded``) has its steps in position
order (then hash) and its waits in creation order (then id), and its events in the run's
order, whatever order the server reads the rows in: ``LOAD_RUN`` aggregates each table's
columns into arrays without sorting them (a sort per column), and ``_rows.run_state`` orders the
rows."""

from __future__ import annotations

from tests.store.builders import T0, commit, lease, start, step, wait

from stepline.store.postgres import PostgresStore
from stepline.store.records import PassCommit


def test_a_loaded_runs_steps_and_waits_are_in_their_order(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1")
        [held] = lease(store, "w1", T0)
        # ids sort one way, positions and creation times the other
        waits = [
            wait("r1", f"w-{x}", None, step_hash=f"h-w{x}", created_at=T0 + t)
            for x, t in (("a", 2), ("b", 1), ("c", 0))
        ]
        steps = [step("r1", "h-a", 2), step("r1", "h-b", 0), step("r1", "h-c", 1)]
        pending = [
            step("r1", w.step_hash, 5 - i, "PENDING", kind="wait") for i, w in enumerate(waits)
        ]
        commit(store, PassCommit("r1", held.token, steps=[*steps, *pending], waits=waits))
        state = store.load_run("r1")
        assert state is not None
        assert list(state.steps) == ["h-b", "h-c", "h-a", "h-wc", "h-wb", "h-wa"]
        assert [w.wait_id for w in state.waits] == ["w-c", "w-b", "w-a"]
        [again] = lease(store, "w2", T0 + 3600)  # w1's lease expired: leased with its run
        assert again.loaded is not None
        assert again.loaded() == store.load_run("r1")
    finally:
        store.close()
