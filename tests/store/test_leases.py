"""The queue: leasing due runs, lease expiry and reclaim, heartbeats, release, next wake-up."""

from __future__ import annotations

import pytest

from stepline.errors import LeaseLostError
from stepline.store import Store
from stepline.store.records import Lease, PassCommit, RunEnd

from .builders import SERVED, T0, TTL, commit, heartbeat, lease, lease_run, start


def ids(leases: list[Lease]) -> list[str]:
    return [held.run_id for held in leases]


def test_only_due_runs_are_leased(store: Store) -> None:
    start(store, "r1", now=T0)
    start(store, "r2", now=T0 + 10)
    assert ids(lease(store, "w1", now=T0 + 5)) == ["r1"]
    assert ids(lease(store, "w1", now=T0 + 9)) == []
    assert ids(lease(store, "w1", now=T0 + 10)) == ["r2"]


def test_lease_due_takes_at_most_limit_earliest_first(store: Store) -> None:
    # Ids sort the other way round from due times, so an id-ordered answer fails.
    start(store, "r-c", now=T0 + 1)
    start(store, "r-b", now=T0 + 2)
    start(store, "r-a", now=T0 + 3)
    assert ids(lease(store, "w1", now=T0 + 10, limit=2)) == ["r-c", "r-b"]
    assert ids(lease(store, "w1", now=T0 + 10, limit=2)) == ["r-a"]
    assert ids(lease(store, "w1", now=T0 + 10, limit=2)) == []


def test_expired_leases_are_ordered_by_their_expiry(store: Store) -> None:
    start(store, "r-z", now=T0)
    lease(store, "w1", now=T0, ttl=5)  # r-z: lease expires at T0 + 5
    start(store, "r-y", now=T0 + 6)
    start(store, "r-x", now=T0 + 7)
    assert ids(lease(store, "w2", now=T0 + 20, limit=3)) == ["r-z", "r-y", "r-x"]


def test_a_lease_taken_over_names_the_worker_whose_lease_expired(store: Store) -> None:
    # issue 6 "Crash recovery is announced": the worker taking over can say from whom
    start(store, "r1", "r2")
    [first, _] = lease(store, "w1", now=T0, ttl=5)
    assert first.taken_over_from is None
    start(store, "r3", now=T0 + 6)
    taken = {held.run_id: held.taken_over_from for held in lease(store, "w2", now=T0 + 10)}
    assert taken == {"r1": "w1", "r2": "w1", "r3": None}


def test_one_call_gives_one_token_and_calls_give_distinct_tokens(store: Store) -> None:
    start(store, "r1", "r2", "r3")
    first = lease(store, "w1", limit=2)
    second = lease(store, "w1", limit=2)
    assert len({held.token for held in first}) == 1
    assert first[0].token != second[0].token
    assert set(ids(first)).isdisjoint(ids(second))


def test_a_leased_run_is_not_leased_again_until_the_lease_expires(store: Store) -> None:
    start(store, "r1")
    [first] = lease(store, "w1", now=T0, ttl=TTL)
    assert lease(store, "w1", now=T0 + 1) == []
    assert lease(store, "w2", now=T0 + TTL - 0.001) == []

    [second] = lease(store, "w2", now=T0 + TTL)
    assert second.run_id == "r1"
    assert second.token != first.token
    assert lease(store, "w1", now=T0 + TTL + 1) == []


def test_the_old_token_is_fenced_out_after_reclaim(store: Store) -> None:
    start(store, "r1")
    [first] = lease(store, "w1", now=T0)
    [second] = lease(store, "w2", now=T0 + TTL)
    with pytest.raises(LeaseLostError):
        commit(store, PassCommit("r1", first.token, end=RunEnd("COMPLETED")), T0 + TTL + 1)
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.worker_id) == ("RUNNING", "w2")
    commit(store, PassCommit("r1", second.token, end=RunEnd("COMPLETED")), T0 + TTL + 1)
    run = store.get_run("r1")
    assert run is not None
    assert run.status == "COMPLETED"


def test_heartbeat_extends_the_lease(store: Store) -> None:
    start(store, "r1", "r2")
    lease(store, "w1", now=T0, ttl=TTL)
    assert heartbeat(store, "w1", ["r1", "r2"], now=T0 + 20, ttl=TTL) == []
    assert store.next_due_at() == T0 + 20 + TTL
    assert lease(store, "w2", now=T0 + TTL + 1) == []
    assert sorted(ids(lease(store, "w2", now=T0 + 20 + TTL))) == ["r1", "r2"]


def test_heartbeat_reports_lost_leases(store: Store) -> None:
    start(store, "r1", "r2")
    lease(store, "w1", now=T0, ttl=TTL)
    lease_run(store, "r1", "w2", now=T0 + TTL)  # both expired: w2 takes r1 and r2 ...
    assert sorted(heartbeat(store, "w1", ["r1", "r2", "ghost"], now=T0 + TTL)) == [
        "ghost",
        "r1",
        "r2",
    ]
    assert heartbeat(store, "w2", ["r1", "r2"], now=T0 + TTL + 1) == []


def test_heartbeat_by_another_owner_does_not_steal_or_extend(store: Store) -> None:
    start(store, "r1")
    lease(store, "w1", now=T0, ttl=TTL)
    assert heartbeat(store, "w2", ["r1"], now=T0 + 10, ttl=1000) == ["r1"]
    assert store.next_due_at() == T0 + TTL


def test_heartbeat_after_the_run_suspended_reports_it_lost(store: Store) -> None:
    start(store, "r1")
    held = lease_run(store, "r1", "w1")
    commit(store, PassCommit("r1", held.token, end=RunEnd("SLEEPING", due_at=T0 + 100)))
    assert heartbeat(store, "w1", ["r1"], now=T0 + 1) == ["r1"]
    assert store.next_due_at() == T0 + 100


def test_release_owner_makes_its_runs_due_now_keeping_their_place(store: Store) -> None:
    start(store, "r1", "r2", "r3")
    held = lease(store, "w1", now=T0, limit=2, ttl=1000)
    lease(store, "w2", now=T0, ttl=1000)
    with store.transaction() as tx:
        assert tx.release_owner("w1", T0 + 5) == 2
        assert tx.release_owner("nobody", T0 + 5) == 0
    assert store.next_due_at() == T0  # their original due time: ahead of newer work
    again = lease(store, "w3", now=T0 + 5)
    assert sorted(ids(again)) == sorted(ids(held))
    with pytest.raises(LeaseLostError):
        commit(store, PassCommit(held[0].run_id, held[0].token), T0 + 6)


def test_next_due_at_is_the_earliest_due_or_lease_expiry(store: Store) -> None:
    assert store.next_due_at() is None
    start(store, "r1", now=T0)
    start(store, "r2", now=T0 + 50)
    assert store.next_due_at() == T0
    lease_run(store, "r1", "w1", now=T0)  # leased until T0 + 30; r2 is due at T0 + 50
    assert store.next_due_at() == T0 + TTL
    heartbeat(store, "w1", ["r1"], now=T0 + 10, ttl=100)  # leased until T0 + 110
    assert store.next_due_at() == T0 + 50
    assert ids(lease(store, "w2", now=T0 + 50, ttl=100)) == ["r2"]  # leased until T0 + 150
    assert store.next_due_at() == T0 + 110


def test_next_due_at_ignores_ended_and_waiting_runs(store: Store) -> None:
    start(store, "r1", "r2")
    one, two = lease(store, "w1")
    commit(store, PassCommit(one.run_id, one.token, end=RunEnd("COMPLETED")))
    commit(store, PassCommit(two.run_id, two.token, end=RunEnd("WAITING", due_at=None)))
    assert store.next_due_at() is None
    assert lease(store, "w1", now=T0 + 10**9) == []


def test_a_paused_functions_expired_lease_is_not_leased_again(store: Store) -> None:
    # issue 6 item 6: paused functions still got their expired-lease runs leased
    start(store, "r1")
    lease_run(store, "r1", "w1", now=T0)
    with store.transaction() as tx:
        tx.set_paused("fn", True)
    assert lease(store, "w2", now=T0 + TTL + 1) == []
    assert store.next_due_at() is None  # nothing a worker could act on: no polling for it
    with store.transaction() as tx:
        tx.set_paused("fn", False)
    assert store.next_due_at() == T0 + TTL
    assert ids(lease(store, "w2", now=T0 + TTL + 1)) == ["r1"]


def test_runs_due_soon_are_leased_ahead_with_their_due_time(store: Store) -> None:
    # timers are leased shortly before they are due (the worker's lease_ahead), so the lease
    # transaction is off the wake-up's critical path; the pass waits for Lease.due_at
    start(store, "r-now", now=T0)
    start(store, "r-soon", now=T0 + 0.04)
    start(store, "r-later", now=T0 + 1)
    with store.transaction() as tx:
        got = tx.lease_due("w1", T0, 10, TTL, SERVED, due_by=T0 + 0.05)
    assert [(held.run_id, held.due_at) for held in got] == [("r-now", None), ("r-soon", T0 + 0.04)]
    assert ids(lease(store, "w1", now=T0 + 0.5)) == []
    assert ids(lease(store, "w1", now=T0 + 1)) == ["r-later"]
