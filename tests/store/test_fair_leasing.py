"""Fair leasing (issue 8): a backlog of one function, or of one concurrency-key value, never
delays the runs of another; within a function priority and queue order still hold, and no old
run starves.

The order: among the functions (then, within a function, the concurrency-key values) that have
due runs, the one with the fewest live leases goes first, the oldest due run breaking ties; a
function's (key value's) runs keep their own order (due time, priority included, then run id).
"""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import Admission, EventIngest, Lease, NewRun, PassCommit, RunEnd

from .builders import T0, commit, event, ingest, lease, start

BACKLOG = 60


def ids(leases: list[Lease]) -> list[str]:
    return [held.run_id for held in leases]


def start_keyed(
    store: Store, run_id: str, key: str, now: float, *, limit: int = 1000, priority: float = 0.0
) -> None:
    """A run of "fn" holding a concurrency slot of ``key`` (limit ``limit``)."""
    admission = Admission(concurrency=((f"fn\x1f\x1f{key}", limit),), priority=priority)
    new_run = NewRun(run_id, "fn", (f"ev-{run_id}",), admission=admission)
    ingest(store, EventIngest(event(f"ev-{run_id}"), (new_run,)), now=now)


def complete(store: Store, leases: list[Lease], now: float) -> None:
    for held in leases:
        commit(store, PassCommit(held.run_id, held.token, end=RunEnd("COMPLETED")), now)


def test_a_new_run_of_another_function_is_in_the_first_lease_batch(store: Store) -> None:
    start(store, *(f"a{i:03}" for i in range(BACKLOG)), now=T0, function_id="fa")
    start(store, "b1", now=T0 + 1, function_id="fb")
    assert "b1" in ids(lease(store, now=T0 + 2, limit=10))


def test_a_worker_saturated_by_one_function_takes_the_other_first(store: Store) -> None:
    # the worker's slots are full of fa's runs; one slot frees: fb's new run gets it
    start(store, *(f"a{i:03}" for i in range(BACKLOG)), now=T0, function_id="fa")
    assert len(lease(store, now=T0, limit=10)) == 10
    start(store, "b1", now=T0 + 1, function_id="fb")
    assert ids(lease(store, now=T0 + 2, limit=1)) == ["b1"]


def test_a_new_key_value_is_in_the_first_lease_batch(store: Store) -> None:
    for i in range(BACKLOG):
        start_keyed(store, f"x{i:03}", "tenant-x", now=T0)
    start_keyed(store, "y1", "tenant-y", now=T0 + 1)
    assert "y1" in ids(lease(store, now=T0 + 2, limit=10))


def test_a_worker_saturated_by_one_key_value_takes_the_other_first(store: Store) -> None:
    for i in range(BACKLOG):
        start_keyed(store, f"x{i:03}", "tenant-x", now=T0)
    assert len(lease(store, now=T0, limit=10)) == 10
    start_keyed(store, "y1", "tenant-y", now=T0 + 1)
    assert ids(lease(store, now=T0 + 2, limit=1)) == ["y1"]


def test_functions_take_turns_within_one_batch(store: Store) -> None:
    start(store, *(f"a{i}" for i in range(5)), now=T0, function_id="fa")
    start(store, *(f"b{i}" for i in range(5)), now=T0 + 1, function_id="fb")
    assert ids(lease(store, now=T0 + 2, limit=6)) == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_priority_order_is_kept_within_a_function(store: Store) -> None:
    # priority moves a run ahead of its function's older runs, never behind another's turn
    for i, priority in enumerate([0.0, 0.0, 300.0, 0.0, 600.0]):
        start_keyed(store, f"p{i}", "one-key", now=T0 + 10 + i, priority=priority)
    start(store, "b1", now=T0 + 5, function_id="fb")
    got = ids(lease(store, now=T0 + 20, limit=6))
    assert [r for r in got if r.startswith("p")] == ["p4", "p2", "p0", "p1", "p3"]
    assert set(got) == {"p0", "p1", "p2", "p3", "p4", "b1"}


def test_old_work_is_not_starved_by_a_stream_of_new_runs(store: Store) -> None:
    # fa has an old backlog; fb and fc get a new run before every lease; each leased pass ends
    # before the next lease. fa's runs still progress, oldest first, at its share of the slots.
    start(store, *(f"a{i}" for i in range(6)), now=T0, function_id="fa")
    taken: list[str] = []
    now = T0 + 100
    for turn in range(9):
        start(store, f"b{turn}", now=now, function_id="fb")
        start(store, f"c{turn}", now=now, function_id="f")
        got = lease(store, now=now, limit=2)
        taken += ids(got)
        complete(store, got, now)
        now += 1
    assert [r for r in taken if r.startswith("a")] == [f"a{i}" for i in range(6)]


def test_key_values_beyond_one_leases_visits_are_served_in_turn(store: Store) -> None:
    # one key value's backlog fills the lease's window and holds 10 live leases; 40 other
    # values (more than a lease visits behind a backlog: GROUP_VISITS) have one run each.
    # Leased one at a time, each lease takes a run of a value with no live lease: the visits
    # go on from where the last one stopped, so every value is reached, none twice
    for i in range(BACKLOG):
        start_keyed(store, f"x{i:03}", "tenant-x", now=T0)
    assert len(lease(store, now=T0, limit=10)) == 10
    others = [f"y{i:02}" for i in range(40)]
    for run_id in others:
        start_keyed(store, run_id, f"tenant-{run_id}", now=T0 + 1)
    taken = [run for _ in range(40) for run in ids(lease(store, now=T0 + 2, limit=1))]
    assert sorted(taken) == others
