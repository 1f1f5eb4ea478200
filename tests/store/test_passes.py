"""The count of passes begun without progress: lease_due fails a run re-entered too often
(issue 6 item 1: no run may be re-entered without bound)."""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import EventIngest, Lease, NewRun, PassCommit, RunEnd, StepRecord

from .builders import SERVED, T0, TTL, commit, event, history_kinds, lease_run, start, step


def lease_capped(store: Store, now: float, max_passes: int) -> list[Lease]:
    with store.transaction() as tx:
        return tx.lease_due("w1", now, 100, TTL, SERVED, max_passes)


def test_a_run_leased_max_passes_times_without_a_commit_is_failed_instead(store: Store) -> None:
    # issue 6 item 1
    start(store, "r1")
    for n in range(3):  # each lease expires unused (its pass crashed)
        [held] = lease_capped(store, T0 + n * TTL, max_passes=3)
        assert held.run_id == "r1"
    assert lease_capped(store, T0 + 3 * TTL, max_passes=3) == []
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.ended_at) == ("FAILED", T0 + 3 * TTL)
    assert run.error == {
        "name": "LimitExceededError",
        "message": "run r1 re-entered 3 times without progress",
        "limit": "passes",
    }
    assert history_kinds(store, "r1")[-1] == "RUN_FAILED"
    assert store.get_history("r1")[-1].data == run.error
    assert store.next_due_at() is None  # nothing left queued
    assert lease_capped(store, T0 + 10 * TTL, max_passes=3) == []


def test_a_commit_of_the_run_starts_the_count_again(store: Store) -> None:
    # issue 6 item 1: the bound is on passes without progress, not on passes
    start(store, "r1")
    lease_capped(store, T0, max_passes=2)
    [held] = lease_capped(store, T0 + TTL, max_passes=2)
    result = step("r1", "h1", 0, "COMPLETED", 1)
    commit(store, PassCommit("r1", held.token, steps=[result]), T0 + TTL + 1)
    lease_capped(store, T0 + 2 * TTL, max_passes=2)
    [held] = lease_capped(store, T0 + 3 * TTL, max_passes=2)
    commit(store, PassCommit("r1", held.token, end=RunEnd("SLEEPING", due_at=T0 + 4 * TTL)))
    [held] = lease_capped(store, T0 + 4 * TTL, max_passes=2)
    [held] = lease_capped(store, T0 + 5 * TTL, max_passes=2)
    assert lease_capped(store, T0 + 6 * TTL, max_passes=2) == []
    run = store.get_run("r1")
    assert run is not None and run.status == "FAILED"


def test_a_failed_child_wakes_its_parent_with_the_error(store: Store) -> None:
    # issue 6 item 1: a parent invoking the run is not left waiting
    start(store, "parent")
    held = lease_run(store, "parent")
    pending = StepRecord("parent", "h-inv", "call", "invoke", 0, "PENDING")
    invoked = EventIngest(event("inv-1", "inngest/function.invoked", {"x": 1}))
    child = NewRun("child", "fn", ("inv-1",), "parent", "h-inv")
    parent_end = RunEnd("WAITING", due_at=None)
    commit(
        store,
        PassCommit(
            "parent",
            held.token,
            steps=[pending],
            events=[invoked],
            child_runs=[child],
            end=parent_end,
        ),
        T0 + 1,
    )
    [held] = lease_capped(store, T0 + 1, max_passes=1)
    assert held.run_id == "child"
    assert lease_capped(store, T0 + 1 + TTL, max_passes=1) == []  # failed, not leased
    [settled] = store.get_steps("parent")
    assert settled.status == "FAILED"
    assert settled.error is not None and settled.error["limit"] == "passes"
    assert [held.run_id for held in lease_capped(store, T0 + 1 + TTL, max_passes=1)] == ["parent"]
