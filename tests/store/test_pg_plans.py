"""Query plans of the PostgreSQL store's hot reads: they find their rows by index, so their cost
does not grow with the tables (asserted on the plan, not on time)."""

from __future__ import annotations

import psycopg
from tests.store.builders import cel_matches, event, start

from stepline.store.postgres import PostgresStore
from stepline.store.postgres import _read_queries as rq
from stepline.store.records import EventIngest


def test_load_run_finds_its_events_by_primary_key(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        with store.transaction() as tx:  # many events that start no run
            items = [EventIngest(event(f"other-{n}"), ()) for n in range(3000)]
            tx.ingest(items, 1.0, cel_matches)
        start(store, "r1")
        state = store.load_run("r1")
        assert state is not None and [e.internal_id for e in state.events] == ["ev-r1"]
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE events")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + rq.LOAD_RUN, ("r1",)))
    assert "Seq Scan on events" not in plan, plan
    assert "events_pkey" in plan, plan
