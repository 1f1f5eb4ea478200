"""Housekeeping's start-deadline cancel racing a lease that a worker takes on time, on
PostgreSQL (review of 08d61c9): the cancel must never end a run that started on time."""

from __future__ import annotations

import threading

from tests.store.builders import SERVED, T0, TTL, event, ingest

from stepline.store.postgres import PostgresStore
from stepline.store.records import Admission, EventIngest, NewRun


def test_an_on_time_lease_racing_the_overdue_cancel_is_not_cancelled(pg_url: str) -> None:
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        run = NewRun("r1", "fn", ("ev-r1",), admission=Admission(start_timeout=10.0))
        ingest(a, EventIngest(event("ev-r1"), (run,)), now=T0)
        leased = threading.Event()
        release = threading.Event()
        got: list[object] = []

        def worker_a() -> None:  # leases at T0 + 9 (on time); its COMMIT is a little late
            with a.transaction() as tx:
                got.append([h.run_id for h in tx.lease_due("wA", T0 + 9, 10, TTL, SERVED)])
                leased.set()
                release.wait(10)

        t = threading.Thread(target=worker_a)
        t.start()
        assert leased.wait(10)
        cancelled: list[object] = []

        def worker_b() -> None:  # housekeeping at T0 + 11 (its clock, or a moment later)
            with b.transaction() as tx:
                for run_id, _, _ in tx.overdue_starts(T0 + 11, SERVED, 100):
                    cancelled.append(tx.cancel_run(run_id, T0 + 11, "not started within 10s"))

        tb = threading.Thread(target=worker_b)
        tb.start()
        tb.join(1.0)  # b waits for a's row lock (or has finished)
        release.set()
        t.join(10)
        tb.join(10)
        state = a.get_run("r1")
        assert got == [["r1"]]
        assert state is not None
        assert (state.status, cancelled) == ("RUNNING", []), (
            state.status,
            state.started_at,
            cancelled,
        )
    finally:
        a.close()
        b.close()
