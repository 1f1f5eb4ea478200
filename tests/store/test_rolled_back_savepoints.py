"""What a write transaction remembers of what it read (the index's "no unindexed wait or matcher of
this name", the trigger catalog) is undone with a savepoint rolled back (a failing group-commit
job), as the rows are: later ingestions of the same transaction see the rows as they are again."""

from __future__ import annotations

from tests.store.builders import (
    SERVED,
    T0,
    TTL,
    cel_matches,
    event,
    ingest,
    lease_run,
    start,
    step,
    suspend_on_wait,
    wait,
)

from stepline.store import Store
from stepline.store.records import (
    Admission,
    EventIngest,
    FunctionSet,
    MatcherSpec,
    NewRun,
    PassCommit,
    RunEnd,
    TriggerRow,
)

APP = FunctionSet("shop", ("fn",))


class Boom(Exception):
    pass


def sent(internal_id: str, name: str) -> EventIngest:
    return EventIngest(event(internal_id, name, {"n": internal_id}), sender=APP)


def test_a_wait_restored_by_a_rolled_back_savepoint_still_gets_the_next_event(store: Store) -> None:
    start(store, "r1")
    suspend_on_wait(store, lease_run(store, "r1"), wait("r1", "w1", None, event_name="paid"))
    with store.transaction() as tx:
        try:
            with tx.savepoint():  # a group-commit job that fails after its ingestions
                [first] = tx.ingest([sent("e1", "paid")], T0 + 1, cel_matches)
                assert first.resumed_run_ids == ("r1",)
                tx.ingest([sent("e2", "paid")], T0 + 1, cel_matches)  # no unindexed wait left
                raise Boom
        except Boom:
            pass
        [third] = tx.ingest([sent("e3", "paid")], T0 + 1, cel_matches)  # w1 is pending again
    assert third.resumed_run_ids == ("r1",)


def test_a_cancel_matcher_restored_by_a_rolled_back_savepoint_still_cancels(store: Store) -> None:
    spec = MatcherSpec("order/cancelled", None, None, None, None)  # unindexed, any such event
    run = NewRun("r1", "fn", ("ev-r1",), admission=Admission(cancel_on=(spec,)))
    ingest(store, EventIngest(event("ev-r1"), (run,)))
    with store.transaction() as tx:
        try:
            with tx.savepoint():  # a group-commit job that fails after its ingestions
                [first] = tx.ingest([sent("c1", "order/cancelled")], T0 + 1, cel_matches)
                assert first.cancelled == (("r1", "fn"),)
                tx.ingest([sent("c2", "order/cancelled")], T0 + 1, cel_matches)
                raise Boom
        except Boom:
            pass
        [third] = tx.ingest([sent("c3", "order/cancelled")], T0 + 1, cel_matches)
    assert third.cancelled == (("r1", "fn"),)  # r1 is queued again, its matcher back


def test_a_trigger_restored_by_a_rolled_back_savepoint_still_gets_the_next_event(
    store: Store,
) -> None:
    with store.transaction() as tx:
        tx.sync_triggers("emails", [TriggerRow("emails", "receipt", "order/paid")], T0)
    with store.transaction() as tx:
        try:
            with tx.savepoint():  # a group-commit job that fails after its ingestion
                tx.sync_triggers("emails", [], T0)
                [first] = tx.ingest([sent("e1", "order/paid")], T0, cel_matches)
                assert first.delivered == ()
                raise Boom
        except Boom:
            pass
        [second] = tx.ingest([sent("e2", "order/paid")], T0, cel_matches)  # the trigger is back
    assert second.delivered == (("emails", "receipt"),)


def test_a_run_cancelled_in_a_rolled_back_savepoint_loses_its_waits_when_cancelled(
    store: Store,
) -> None:
    # contrived (one transaction leases the run and commits its pass): what the transaction
    # remembers of the runs it cancelled while QUEUED (they have no waits to delete) is undone
    # with the savepoint, as the cancellation is
    start(store, "r1")
    pending = wait("r1", "w1", None, event_name="paid")
    with store.transaction() as tx:
        try:
            with tx.savepoint():
                assert tx.cancel_run("r1", T0 + 1, "first") == "fn"  # QUEUED: never leased
                raise Boom
        except Boom:
            pass
        [held] = tx.lease_due("w1", T0 + 1, 100, TTL, SERVED)  # r1 is QUEUED again
        suspend = PassCommit(
            "r1",
            held.token,
            steps=[step("r1", pending.step_hash, 0, "PENDING", kind="wait")],
            waits=[pending],
            end=RunEnd("WAITING"),
        )
        assert tx.commit_pass(suspend, T0 + 1, cel_matches) is not None
        assert tx.cancel_run("r1", T0 + 2, "second") == "fn"
    loaded = store.load_run("r1")
    assert loaded is not None and loaded.waits == []
    [resolving] = ingest(store, sent("e1", "paid"), now=T0 + 3)
    assert resolving.resumed_run_ids == ()
