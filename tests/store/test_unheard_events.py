"""Events nothing listens to (no run planned, no catalog listener, no wait, no cancel matcher of
their name: the announcements of cancelled runs, usually) are only stored by the ingest verb
(``_ingest_rules._unheard``): stored as any event, and a listener of any kind, even for one
event of a batch, still gets its events."""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import EventFilter, EventIngest, FunctionSet, NewRun, TriggerRow

from .builders import (
    T0,
    event,
    history_kinds,
    ingest,
    lease,
    lease_run,
    start,
    suspend_on_wait,
    wait,
)
from .test_ingest_batch import cancellable

QUIET = "inngest/function.finished"
APP = FunctionSet("shop", ("fn",))


def quiet(internal_id: str, sender_id: str | None = None) -> EventIngest:
    return EventIngest(
        event(internal_id, QUIET, {"n": internal_id}, sender_id=sender_id), sender=APP
    )


def test_events_nothing_listens_to_are_stored_as_any_event(store: Store) -> None:
    results = ingest(store, quiet("e1", "s-1"), quiet("e2"), quiet("e3", "s-1"))
    assert [(r.internal_id, r.duplicate) for r in results] == [
        ("e1", False),
        ("e2", False),
        ("e3", True),  # the sender id of e1 again: a duplicate, stored as one
    ]
    assert all(not (r.run_ids or r.resumed_run_ids or r.cancelled or r.delivered) for r in results)
    stored = {s.event.internal_id: s for s in store.list_events(EventFilter(name=QUIET))}
    assert sorted(stored) == ["e1", "e2", "e3"]
    assert stored["e2"].event.data == {"n": "e2"}
    assert [stored[i].duplicate for i in ("e1", "e2", "e3")] == [False, False, True]
    assert store.event_runs(["e1", "e2", "e3"]) == []


def test_a_wait_on_the_name_gets_its_event(store: Store) -> None:
    start(store, "r1", "r2")
    # r1 waits for any inngest/function.finished (unindexed), r2 for one of an index value
    leases = {held.run_id: held for held in lease(store)}
    suspend_on_wait(store, leases["r1"], wait("r1", "w1", None, event_name=QUIET))
    indexed = wait("r2", "w2", 'async.data.n == "e2"', event_name=QUIET)
    suspend_on_wait(store, leases["r2"], indexed)
    first, second = ingest(store, quiet("e1"), quiet("e2"), now=T0 + 1)
    assert (first.resumed_run_ids, second.resumed_run_ids) == (("r1",), ("r2",))


def test_a_cancel_matcher_on_the_name_gets_its_event(store: Store) -> None:
    ingest(store, cancellable("r1", "o-1", name=QUIET))
    [result] = ingest(
        store, EventIngest(event("c1", QUIET, {"orderId": "o-1"}), sender=APP), now=T0 + 1
    )
    assert result.cancelled == (("r1", "fn"),)
    assert history_kinds(store, "r1")[-1] == "RUN_CANCELLED"


def test_a_function_of_the_catalog_or_a_planned_run_gets_its_event(store: Store) -> None:
    with store.transaction() as tx:
        tx.sync_triggers("emails", [TriggerRow("emails", "receipt", QUIET)], T0)
    handed, started = ingest(
        store,
        quiet("e1"),
        EventIngest(event("e2", QUIET), (NewRun("r1", "fn", ("e2",)),), sender=APP),
    )
    assert handed.delivered == (("emails", "receipt"),)
    assert started.run_ids == ("r1",)


def test_one_listened_event_in_a_batch_is_not_lost_among_quiet_ones(store: Store) -> None:
    start(store, "r1")
    pending = wait("r1", "w1", 'async.data.orderId == "o-1"')  # on payment/received
    suspend_on_wait(store, lease_run(store, "r1"), pending)
    paid = EventIngest(event("p1", "payment/received", {"orderId": "o-1"}), sender=APP)
    results = ingest(store, quiet("e1"), paid, quiet("e2"), now=T0 + 1)
    assert [r.resumed_run_ids for r in results] == [(), ("r1",), ()]
