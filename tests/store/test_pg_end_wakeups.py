"""PostgreSQL: the end of a run wakes the workers only when it frees a concurrency slot. A run
holds a slot of each of its concurrency keys (a function's limit is one) while it is leased; a
run held back by a full key is due and waits for one, and the workers learn of it only by a
notification: another process's, and the one that ran the pass too, its own process's listener
hearing it (its pass's end also wakes it in process, but only when a look may find work it has
not looked for: ``Worker._pass_end_looks``). A run without keys frees nothing another run waits
for: its end (a pass's, a cancellation's, a spent run's) sends no notification, where every
worker of every process used to make a full lease attempt for it."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

from tests.store.builders import SERVED, T0, cel_matches, commit, ingest, lease, start
from tests.store.test_pg_named_leases import keyed
from tests.store.test_pg_optimistic import one_batch

from stepline.store.postgres import PostgresStore
from stepline.store.records import FunctionSet, Lease, PassCommit, RunEnd

Heard = list[Sequence[tuple[str, str]]]
_MARKS = itertools.count()


def heard_from(store: PostgresStore, act: Callable[[], object]) -> Heard:
    """The notifications the transactions of ``act`` sent, in commit order: each the runs it
    named (a plain one: none). A new run committed after them (a notification naming it) marks
    their end."""
    heard: Heard = []
    mark = [("fn", f"mark-{next(_MARKS)}")]
    listening = threading.Event()

    def on_wake(named: Sequence[tuple[str, str]]) -> None:
        listening.set()
        heard.append(named)

    stop = store.watch(on_wake)
    try:
        assert listening.wait(30)  # woken once it listens
        heard.clear()
        act()
        start(store, mark[0][1])
        deadline = time.monotonic() + 30
        while mark not in heard:
            assert time.monotonic() < deadline, f"no mark notification: {heard}"
            time.sleep(0.002)  # real time: a poll of the listener thread's list, under the deadline
    finally:
        stop()
    return heard[: heard.index(mark)]


def ended(held: Lease, status: str = "COMPLETED") -> PassCommit:
    return PassCommit(held.run_id, held.token, end=RunEnd(status, output_json=b"1"))


def test_the_end_of_a_run_without_concurrency_keys_wakes_no_worker(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r1", "r2")
    first, second = sorted(lease(pg_store), key=lambda h: h.run_id)
    assert heard_from(pg_store, lambda: commit(pg_store, ended(first))) == []
    # nor in a group commit (the endings one statement: _coalesce), nor a failure's
    assert heard_from(pg_store, lambda: one_batch(pg_store, [_job(ended(second, "FAILED"))])) == []
    assert [_status(pg_store, r) for r in ("r1", "r2")] == ["COMPLETED", "FAILED"]


def test_the_end_of_a_run_holding_a_concurrency_slot_wakes_the_workers(
    pg_store: PostgresStore,
) -> None:
    ingest(pg_store, keyed("k1"), keyed("k2"))
    [held] = lease(pg_store)  # k2 is held back: the key's one slot is k1's
    assert held.run_id == "k1" and lease(pg_store, owner="w2") == []
    assert heard_from(pg_store, lambda: commit(pg_store, ended(held))) == [[]]  # plain: look
    [second] = lease(pg_store, owner="w2", functions=_only("fa"))  # the slot it freed
    assert second.run_id == "k2"


def test_group_commits_ending_runs_with_and_without_slots_wake_the_workers_once(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r1", "r2")
    ingest(pg_store, keyed("k1"), keyed("k2", "fb"))
    held = sorted(lease(pg_store), key=lambda h: h.run_id)
    assert [h.run_id for h in held] == ["k1", "k2", "r1", "r2"]
    heard = heard_from(pg_store, lambda: one_batch(pg_store, [_job(ended(h)) for h in held]))
    assert heard == [[]]


def test_a_cancellation_wakes_the_workers_only_when_the_run_held_a_slot(
    pg_store: PostgresStore,
) -> None:
    start(pg_store, "r1")
    ingest(pg_store, keyed("k1"), keyed("k2"), keyed("q1", "fb"))
    leased = {h.run_id for h in lease(pg_store, limit=2, functions=_only("fn", "fa"))}
    assert leased == {"r1", "k1"}  # k2 is held back; q1 is queued, unleased (fb not served)

    def cancel(run_id: str) -> Callable[[], object]:
        def act() -> None:
            with pg_store.transaction() as tx:
                assert tx.cancel_run(run_id, T0, "test") is not None

        return act

    assert heard_from(pg_store, cancel("r1")) == []  # leased, no key
    assert heard_from(pg_store, cancel("q1")) == []  # a key, but no slot held: not leased
    assert heard_from(pg_store, cancel("k1")) == [[]]  # k2 may start now
    assert [h.run_id for h in lease(pg_store, owner="w2", functions=_only("fa"))] == ["k2"]


def _job(pass_commit: PassCommit) -> Callable[..., object]:
    return lambda tx: tx.commit_pass(pass_commit, T0, cel_matches)


def _only(*function_ids: str) -> FunctionSet:
    return FunctionSet(SERVED.app_id, function_ids)


def _status(store: PostgresStore, run_id: str) -> str:
    record = store.get_run(run_id)
    assert record is not None
    return record.status
