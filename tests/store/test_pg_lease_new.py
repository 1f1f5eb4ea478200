"""PostgreSQL: a transaction that leases the runs it made itself (an in-process send's
``lease_new_runs``) decides with ``LEASE_NEW``: the rules of ``LEASE_NAMED`` (nothing of the
function ahead, not paused), without looking the runs up nor reading them back: their state
is made of what the transaction wrote, as ``load_run`` reads it once committed."""

from __future__ import annotations

import pytest
from tests.store.builders import SERVED, T0, TTL, event, start

from stepline.store.postgres import PostgresStore, _leases
from stepline.store.records import Admission, EventIngest, EventRecord, Lease, NewRun


def made_and_leased(store: PostgresStore, *items: EventIngest, now: float = T0) -> list[Lease]:
    """``items`` ingested and their new runs leased by name to ``w`` in one transaction."""
    with store.transaction() as tx:
        results = tx.ingest(items, now, lambda wait, e: False)
        started = [run_id for r in results for run_id in r.run_ids]
        leases = tx.lease_new_runs("w", now, started, TTL, SERVED)
    return leases()


def test_a_made_runs_lease_gives_the_state_load_run_reads(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    record = EventRecord(
        "ev-1",
        "order/created",
        {"b": [1, 2.5, "é"], "a": {"x": None}},
        {"tz": "UTC"},
        "sender-1",
        T0 - 3.0,
        v="2",
    )
    admission = Admission(start_timeout=60.0, finish_timeout=600.0)
    run = NewRun("r1", "fn", ("ev-1",), "parent", "hash", admission, "")
    original = _leases.lease_named

    def no_named(*args: object, **kwargs: object) -> object:
        sent.append("LEASE_NAMED")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_leases, "lease_named", no_named)
    [lease] = made_and_leased(pg_store, EventIngest(record, (run,)), now=T0)
    assert sent == []  # LEASE_NEW: the run not looked up nor read back
    assert lease.run_id == "r1" and lease.function_id == "fn"
    loaded = lease.loaded()
    assert loaded == pg_store.load_run("r1")
    assert loaded is not None and loaded.run.status == "RUNNING"
    assert loaded.run.worker_id == "w" and loaded.run.started_at == T0
    assert loaded.events[0].data is not record.data  # never the sender's own objects
    [state] = pg_store.queue_states(["r1"], T0)
    assert state.leased


def test_a_made_run_with_a_run_of_its_function_ahead_is_not_leased(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r0", now=T0 - 1.0)  # due, unleased, nobody told of it
    leases = made_and_leased(
        pg_store, EventIngest(event("ev-r1"), (NewRun("r1", "fn", ("ev-r1",)),))
    )
    assert leases == []
    assert [s.leased for s in pg_store.queue_states(["r0", "r1"], T0)] == [False, False]


def test_a_made_run_of_a_paused_function_is_not_leased(pg_store: PostgresStore) -> None:
    with pg_store.transaction() as tx:
        tx.set_paused("fn", True)
    leases = made_and_leased(
        pg_store, EventIngest(event("ev-r1"), (NewRun("r1", "fn", ("ev-r1",)),))
    )
    assert leases == []
    assert [s.leased for s in pg_store.queue_states(["r1"], T0)] == [False]


def test_two_made_runs_are_leased_in_queue_order(pg_store: PostgresStore) -> None:
    leases = made_and_leased(
        pg_store,
        EventIngest(event("ev-r2"), (NewRun("r2", "fa", ("ev-r2",)),)),
        EventIngest(event("ev-r1"), (NewRun("r1", "fb", ("ev-r1",)),)),
    )
    assert [lease.run_id for lease in leases] == ["r1", "r2"]  # due together: by run id
    for lease in leases:
        assert lease.loaded() == pg_store.load_run(lease.run_id)
