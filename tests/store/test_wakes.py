"""Wakes (a child settling its parent's pending step) and cancel_run."""

from __future__ import annotations

import pytest

from stepline.errors import LeaseLostError
from stepline.serde import loads
from stepline.store import Store
from stepline.store.records import (
    EventIngest,
    HistoryRecord,
    Lease,
    PassCommit,
    RunEnd,
    StepRecord,
    Wake,
)

from .builders import (
    T0,
    cel_matches,
    commit,
    event,
    heartbeat,
    history_kinds,
    lease,
    lease_run,
    start,
    step,
    suspend_on_wait,
    wait,
)


def parent_and_child(store: Store) -> tuple[Lease, Lease]:
    """Runs "parent" and "child", both leased by w1."""
    start(store, "parent", "child")
    leases = {held.run_id: held for held in lease(store, "w1")}
    return leases["parent"], leases["child"]


def test_a_wake_settles_the_pending_step_and_makes_the_run_due(store: Store) -> None:
    p, c = parent_and_child(store)
    commit(
        store,
        PassCommit(
            "parent",
            p.token,
            steps=[step("parent", "h-inv", 0, "PENDING", kind="invoke")],
            end=RunEnd("WAITING", due_at=None),
        ),
    )
    assert store.next_due_at() == T0 + 30  # only the child's lease
    wake = Wake("parent", "h-inv", "COMPLETED", b"42", None)
    commit(store, PassCommit("child", c.token, wakes=[wake], end=RunEnd("COMPLETED")), T0 + 5)

    [settled] = store.get_steps("parent")
    assert (settled.status, loads(settled.output_json), settled.ended_at) == (
        "COMPLETED",
        42,
        T0 + 5,
    )
    assert settled.attempts == 1
    assert store.next_due_at() == T0 + 5
    assert [held.run_id for held in lease(store, "w3", now=T0 + 5)] == ["parent"]


def test_a_failed_wake_carries_the_error(store: Store) -> None:
    p, c = parent_and_child(store)
    pending = step("parent", "h-inv", 0, "PENDING", kind="invoke")
    commit(store, PassCommit("parent", p.token, steps=[pending], end=RunEnd("WAITING")))
    error = {"name": "ValueError", "message": "child failed"}
    wake = Wake("parent", "h-inv", "FAILED", None, error)
    commit(store, PassCommit("child", c.token, wakes=[wake], end=RunEnd("FAILED", error=error)))
    [settled] = store.get_steps("parent")
    assert (settled.status, settled.error, settled.output_json) == ("FAILED", error, None)


def test_a_wake_for_a_step_that_is_not_pending_changes_nothing(store: Store) -> None:
    p, c = parent_and_child(store)
    done = step("parent", "h-inv", 0, output="first")
    commit(store, PassCommit("parent", p.token, steps=[done], end=RunEnd("SLEEPING", T0 + 900)))
    wake = Wake("parent", "h-inv", "COMPLETED", b'"second"', None)
    commit(store, PassCommit("child", c.token, wakes=[wake], end=RunEnd("COMPLETED")), T0 + 5)
    assert store.get_steps("parent") == [done]
    assert store.next_due_at() == T0 + 900


def test_a_wake_for_an_ended_run_changes_nothing(store: Store) -> None:
    p, c = parent_and_child(store)
    pending = step("parent", "h-inv", 0, "PENDING", kind="invoke")
    commit(store, PassCommit("parent", p.token, steps=[pending], end=RunEnd("WAITING")))
    with store.transaction() as tx:
        assert tx.cancel_run("parent", T0 + 1, "user")
    wake = Wake("parent", "h-inv", "COMPLETED", b"1", None)
    commit(store, PassCommit("child", c.token, wakes=[wake], end=RunEnd("COMPLETED")), T0 + 5)
    assert store.get_steps("parent") == [pending]
    run = store.get_run("parent")
    assert run is not None
    assert run.status == "CANCELLED"
    assert store.next_due_at() is None


def test_a_wake_while_the_run_is_leased_is_not_lost(store: Store) -> None:
    p, c = parent_and_child(store)
    # The parent's pass has the invoke pending (committed earlier in the pass) and is still going.
    pending = step("parent", "h-inv", 0, "PENDING", kind="invoke")
    commit(store, PassCommit("parent", p.token, steps=[pending]))
    wake = Wake("parent", "h-inv", "COMPLETED", b"7", None)
    commit(store, PassCommit("child", c.token, wakes=[wake], end=RunEnd("COMPLETED")), T0 + 5)
    assert lease(store, "w2", now=T0 + 5) == []  # the lease still fences the parent
    [settled] = store.get_steps("parent")
    assert settled.status == "COMPLETED"

    # The pass, which loaded the memo before the wake, suspends to wait: it is due at once.
    commit(store, PassCommit("parent", p.token, end=RunEnd("WAITING", due_at=None)), T0 + 6)
    assert store.next_due_at() == T0 + 6
    [again] = lease(store, "w2", now=T0 + 6)
    assert again.run_id == "parent"
    # The flag is spent: the next suspension is honoured as asked.
    commit(store, PassCommit("parent", again.token, end=RunEnd("SLEEPING", T0 + 800)), T0 + 7)
    assert store.next_due_at() == T0 + 800


def test_a_matched_wait_while_the_run_is_leased_is_not_lost(store: Store) -> None:
    start(store, "r1")
    held = lease_run(store, "r1")
    w = wait("r1", "w-1", 'async.data.orderId == "o-1"')
    commit(
        store,
        PassCommit("r1", held.token, steps=[step("r1", w.step_hash, 0, "PENDING")], waits=[w]),
    )
    with store.transaction() as tx:
        [result] = tx.ingest(
            [EventIngest(event("pay", "payment/received", {"orderId": "o-1"}))], T0 + 3, cel_matches
        )
    assert result.resumed_run_ids == ("r1",)
    assert lease(store, "w2", now=T0 + 3) == []
    commit(store, PassCommit("r1", held.token, end=RunEnd("WAITING")), T0 + 4)
    assert [h.run_id for h in lease(store, "w2", now=T0 + 4)] == ["r1"]


# -- cancel_run -----------------------------------------------------------------------------------


def cancel(store: Store, run_id: str, now: float = T0 + 1, reason: str = "by test") -> bool:
    """Whether ``cancel_run`` cancelled the run (it answers with a truthy value)."""
    with store.transaction() as tx:
        return bool(tx.cancel_run(run_id, now, reason))


def test_cancel_a_queued_run(store: Store) -> None:
    start(store, "r1")
    assert cancel(store, "r1", T0 + 2, "no longer needed")
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.ended_at) == ("CANCELLED", T0 + 2)
    assert run.error is not None
    assert run.error["message"] == "no longer needed"
    assert history_kinds(store, "r1")[-1] == "RUN_CANCELLED"
    assert store.next_due_at() is None
    assert lease(store, "w1", now=T0 + 10) == []


def test_cancel_a_leased_run_fences_its_pass(store: Store) -> None:
    start(store, "r1")
    held = lease_run(store, "r1")
    assert cancel(store, "r1")
    in_flight = StepRecord("r1", "h-1", "charge", "run", 0, "COMPLETED", b'"paid"', attempts=1)
    pending = StepRecord("r1", "h-2", "nap", "sleep", 1, "PENDING", due_at=T0 + 60)
    late = PassCommit("r1", held.token, steps=[in_flight, pending], end=RunEnd("COMPLETED"))
    assert commit(store, late, T0 + 2) is None  # the pass must stop
    # the step that was executing keeps its result; nothing else of the pass is applied
    assert [(s.step_id, s.status) for s in store.get_steps("r1")] == [("charge", "COMPLETED")]
    assert heartbeat(store, "w1", ["r1"], T0 + 2) == ["r1"]
    run = store.get_run("r1")
    assert run is not None
    assert run.status == "CANCELLED"
    assert store.next_due_at() is None


def test_cancel_a_waiting_run_removes_its_waits(store: Store) -> None:
    start(store, "r1")
    w = wait("r1", "w-1", 'async.data.orderId == "o-1"', expires_at=T0 + 60)
    suspend_on_wait(store, lease_run(store, "r1"), w, until=T0 + 60)
    assert cancel(store, "r1")
    state = store.load_run("r1")
    assert state is not None
    assert state.waits == []
    with store.transaction() as tx:
        [result] = tx.ingest(
            [EventIngest(event("pay", "payment/received", {"orderId": "o-1"}))], T0 + 3, cel_matches
        )
    assert result.resumed_run_ids == ()
    assert store.next_due_at() is None


def test_cancel_an_ended_or_unknown_run_returns_false(store: Store) -> None:
    start(store, "done", "cancelled")
    held = lease_run(store, "done")
    commit(store, PassCommit("done", held.token, end=RunEnd("COMPLETED", output_json=b"1")))
    assert cancel(store, "cancelled")

    assert not cancel(store, "done")
    assert not cancel(store, "cancelled", reason="again")
    assert not cancel(store, "ghost")
    run = store.get_run("done")
    assert run is not None
    assert (run.status, run.output_json, run.error) == ("COMPLETED", b"1", None)
    again = store.get_run("cancelled")
    assert again is not None
    assert again.error is not None
    assert again.error["message"] == "by test"
    assert history_kinds(store, "done") == ["RUN_QUEUED", "RUN_STARTED"]


def test_a_stale_pass_never_overwrites_results_after_cancel(store: Store) -> None:
    start(store, "r1")
    stale = lease_run(store, "r1", now=T0)
    fresh = lease(store, "w2", now=T0 + 1000, ttl=1000)[0]  # the first lease expired
    newer = StepRecord("r1", "h-x", "x", "run", 0, "COMPLETED", b'"from-B"', attempts=1)
    commit(store, PassCommit("r1", fresh.token, steps=[newer]), T0 + 1001)
    assert cancel(store, "r1")
    late = StepRecord("r1", "h-x", "x", "run", 0, "COMPLETED", b'"from-A"', attempts=1)
    sent = StepRecord("r1", "h-s", "notify", "send", 1, "COMPLETED", b'["e1"]', attempts=1)
    with pytest.raises(LeaseLostError):  # its lease was lost before the cancellation
        commit(store, PassCommit("r1", stale.token, steps=[late, sent]), T0 + 1002)
    kept = {s.step_id: loads(s.output_json) for s in store.get_steps("r1")}
    assert kept == {"x": "from-B"}  # neither the stale result nor an unsent send_event


def test_a_stale_pass_cannot_write_to_a_cancelled_run(store: Store) -> None:
    # issue 6 item 6: the cancelled-run path of commit_pass ran before the lease token check,
    # so a pass that had lost its lease before the run was cancelled could still write
    start(store, "r1")
    stale = lease_run(store, "r1", now=T0)
    [fresh] = lease(store, "w2", now=T0 + 1000, ttl=1000)  # the first lease expired
    assert fresh.token != stale.token
    assert cancel(store, "r1", T0 + 1001)
    late = StepRecord("r1", "h-y", "y", "run", 0, "COMPLETED", b'"from-A"', attempts=1)
    attempt = HistoryRecord("r1", T0 + 1002, "STEP_COMPLETED", "y", 0, 1.0)
    with pytest.raises(LeaseLostError):
        commit(store, PassCommit("r1", stale.token, steps=[late], history=[attempt]), T0 + 1002)
    assert store.get_steps("r1") == []
    assert "STEP_COMPLETED" not in history_kinds(store, "r1")
    # the pass that held the lease when the run was cancelled still keeps its step's result
    mine = StepRecord("r1", "h-z", "z", "run", 0, "COMPLETED", b'"from-B"', attempts=1)
    assert commit(store, PassCommit("r1", fresh.token, steps=[mine]), T0 + 1003) is None
    assert [s.step_id for s in store.get_steps("r1")] == ["z"]
