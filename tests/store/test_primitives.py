"""The state primitives each backend supplies to the shared algorithms (``store/_primitives``),
tested one by one: each returns what its contract says and decides once (the second of two
attempts at one decision gets False/None and writes nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from stepline.expressions import value_at
from stepline.serde import loads
from stepline.store import Store
from stepline.store._pass_rules import PassTx
from stepline.store._primitives import EndedRun, EventJson, LeasePrimitives, ResumedWait
from stepline.store.records import (
    Admission,
    EventFilter,
    EventIngest,
    HistoryRecord,
    MatcherSpec,
    NewRun,
    RunEnd,
    SpentRun,
    Wake,
)

from .builders import (
    DAY,
    T0,
    event,
    history_kinds,
    ingest,
    lease,
    lease_run,
    start,
    step,
    suspend_on_wait,
    wait,
)


@contextmanager
def primitives(store: Store) -> Iterator[PassTx]:
    """The backend's transaction, seen as the primitives the shared algorithms use."""
    with store.transaction() as tx:
        yield cast(PassTx, tx)


def test_insert_events_is_new_once_per_sender_id_within_a_day(store: Store) -> None:
    with primitives(store) as tx:
        first = [event("e1", sender_id="s"), event("e2", sender_id="s"), event("e3"), event("e4")]
        # an earlier event of the same list counts; no sender id: always new
        assert tx.insert_events(first, T0) == [True, False, True, True]
    with primitives(store) as tx:
        assert tx.insert_events([event("e5", sender_id="s")], T0 + DAY - 1) == [False]
        later = [event("e6", sender_id="s"), event("e7", sender_id="s")]
        assert tx.insert_events(later, T0 + DAY + 1) == [True, False]  # seen a day ago
    ids = ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert [e.internal_id for e in store.get_events(ids)] == ids  # duplicates are stored too
    marked = {s.event.internal_id: s.duplicate for s in store.list_events(EventFilter(limit=10))}
    assert marked == {i: i in ("e2", "e5", "e7") for i in ids}


def pending_wait(
    store: Store,
    run_id: str,
    expression: str | None,
    event_name: str = "payment/received",
    expires_at: float | None = None,
) -> None:
    start(store, run_id)
    held = lease_run(store, run_id)
    pending = wait(run_id, f"w-{run_id}", expression, event_name=event_name, expires_at=expires_at)
    suspend_on_wait(store, held, pending)


def key(order_id: str) -> str:
    """The index value of ``data.orderId == order_id`` (as the engine extracts it)."""
    value = value_at({"data": {"orderId": order_id}}, "data.orderId")
    assert value is not None
    return value


def test_wait_candidates_by_index_and_unindexed(store: Store) -> None:
    pending_wait(store, "r1", "async.data.orderId == 'o-1'")
    pending_wait(store, "r2", "async.data.orderId == 'o-2'")
    pending_wait(store, "r3", None)
    pending_wait(store, "r4", "async.data.orderId == 'o-1'", event_name="other/name")
    with primitives(store) as tx:
        assert list(tx.wait_paths("payment/received")) == ["data.orderId"]
        [found] = tx.indexed_waits("payment/received", "data.orderId", [key("o-1")])
        wait_id, run_id, step_hash, _, value, _, created_at, _ = found
        assert (wait_id, run_id, step_hash, value, created_at) == (
            "w-r1",
            "r1",
            "h-wait",
            "o-1",
            T0,
        )
        assert tx.indexed_waits("payment/received", "data.orderId", [key("o-9")]) == []
        assert [w.run_id for w in tx.unindexed_waits("payment/received")] == ["r3"]
        assert list(tx.wait_paths("nothing/waits")) == []
        assert tx.unindexed_waits("nothing/waits") == []


def test_delete_wait_is_won_once(store: Store) -> None:
    pending_wait(store, "r1", None)
    with primitives(store) as tx:
        assert tx.delete_wait("r1", "w-r1")
        assert not tx.delete_wait("r1", "w-r1")
        assert not tx.delete_wait("r1", "never")
        assert tx.unindexed_waits("payment/received") == []


def test_resume_waits_completes_the_step_wakes_the_run_and_logs(store: Store) -> None:
    pending_wait(store, "r1", None, expires_at=T0 + 1000)
    with primitives(store) as tx:
        assert tx.delete_wait("r1", "w-r1")
        payload = EventJson(lambda: {"n": 1})
        tx.resume_waits([ResumedWait("r1", "h-wait", payload, "e-9", None, "w-r1")], T0 + 5)
    [memo] = store.get_steps("r1")
    assert (memo.status, loads(memo.output_json), memo.ended_at) == ("COMPLETED", {"n": 1}, T0 + 5)
    matched = store.get_history("r1")[-1]
    assert (matched.kind, matched.step_id, matched.data) == (
        "WAIT_MATCHED",
        "step-h-wait",
        {"event_id": "e-9"},
    )
    assert [held.run_id for held in lease(store, now=T0 + 5)] == ["r1"]  # due now, not at 1000


def test_matcher_candidates_skip_expired_matchers(store: Store) -> None:
    spec = MatcherSpec("order/cancelled", "event.data.id == 'a'", "data.id", '"a"', 60.0)
    loose = MatcherSpec("order/cancelled", None, None, None, None)
    for run_id, matcher in (("r1", spec), ("r2", loose)):
        run = NewRun(run_id, "fn", (f"e-{run_id}",), admission=Admission(cancel_on=(matcher,)))
        ingest(store, EventIngest(event(f"e-{run_id}"), (run,)))
    with primitives(store) as tx:
        assert list(tx.matcher_paths("order/cancelled")) == ["data.id"]
        found = tx.indexed_matchers("order/cancelled", "data.id", ['"a"'], T0 + 60)
        assert [(m.run_id, m.step_hash) for m in found] == [("r1", "")]
        assert tx.indexed_matchers("order/cancelled", "data.id", ['"a"'], T0 + 61) == []
        assert [m.run_id for m in tx.unindexed_matchers("order/cancelled", T0 + DAY)] == ["r2"]
        assert tx.unindexed_matchers("order/created", T0) == []


def test_mark_cancelled_decides_once_and_drop_run_work_clears_the_run(store: Store) -> None:
    start(store, "r1")
    with primitives(store) as tx:
        ended = tx.mark_cancelled("r1", T0 + 1, {"name": "Cancelled", "message": "why"})
        assert ended == EndedRun("fn", None, None)
        assert tx.mark_cancelled("r1", T0 + 2, {"name": "Cancelled", "message": "again"}) is None
        assert tx.mark_cancelled("missing", T0, {}) is None
        tx.drop_run_work("r1")
        tx.drop_run_work("r1")  # idempotent
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.ended_at, run.error) == (
        "CANCELLED",
        T0 + 1,
        {"name": "Cancelled", "message": "why"},
    )
    assert lease(store, now=T0 + 5) == []


def test_a_cancelled_lease_is_remembered_for_its_pass(store: Store) -> None:
    start(store, "r1")
    held = lease_run(store, "r1")
    start(store, "r2")
    with primitives(store) as tx:
        assert tx.hold_lease("r1", held.token) == "w1"
        assert tx.hold_lease("r1", "other-token") is None
        assert tx.cancelled_lease("r1") is None  # not cancelled
        tx.mark_cancelled("r1", T0, {"name": "Cancelled", "message": "x"})
        tx.mark_cancelled("r2", T0, {"name": "Cancelled", "message": "x"})  # never leased
        tx.drop_run_work("r1")
        tx.drop_run_work("r2")
    with primitives(store) as tx:
        assert tx.hold_lease("r1", held.token) is None
        assert tx.cancelled_lease("r1") == (held.token, "w1")
        assert tx.cancelled_lease("r2") is None


def test_settle_pending_step_settles_once_and_never_an_ended_run(store: Store) -> None:
    start(store, "parent", "ended")
    lease(store)
    for run_id in ("parent", "ended"):
        with primitives(store) as tx:
            tx.put_steps([step(run_id, "h-inv", 0, "PENDING", kind="invoke")])
            tx.suspend_run(run_id, RunEnd("WAITING"), T0, T0)
    with primitives(store) as tx:
        tx.mark_cancelled("ended", T0, {"name": "Cancelled", "message": "x"})
    wake = Wake("parent", "h-inv", "COMPLETED", b"7", None)
    with primitives(store) as tx:
        assert tx.settle_pending_step(wake, T0 + 3)
        assert not tx.settle_pending_step(wake, T0 + 4)
        assert not tx.settle_pending_step(Wake("ended", "h-inv", "FAILED", None, {}), T0)
        assert not tx.settle_pending_step(Wake("parent", "absent", "FAILED", None, {}), T0)
    [settled] = store.get_steps("parent")
    assert (settled.status, settled.output_json, settled.attempts, settled.ended_at) == (
        "COMPLETED",
        b"7",
        1,
        T0 + 3,
    )
    [still] = store.get_steps("ended")
    assert still.status == "PENDING"


def test_wake_run_makes_an_idle_run_due_and_a_leased_run_due_at_its_suspension(
    store: Store,
) -> None:
    start(store, "idle", "busy")
    lease(store)
    for run_id in ("idle", "busy"):
        with primitives(store) as tx:
            tx.suspend_run(run_id, RunEnd("SLEEPING", due_at=T0 + 1000), T0, T0)
    held = lease_run(store, "busy", now=T0 + 1000)  # "idle" too: suspend it again
    with primitives(store) as tx:
        tx.suspend_run("idle", RunEnd("SLEEPING", due_at=T0 + 9000), T0, T0 + 1000)
        tx.wake_run("idle", T0 + 1001)
        tx.wake_run("busy", T0 + 1001)
        tx.wake_run("missing", T0 + 1001)  # nothing to wake: nothing happens
    assert [h.run_id for h in lease(store, now=T0 + 1001)] == ["idle"]
    with primitives(store) as tx:
        assert tx.hold_lease("busy", held.token) == "w1"
        tx.suspend_run("busy", RunEnd("SLEEPING", due_at=T0 + 5000), T0, T0 + 1002)
    assert [h.run_id for h in lease(store, now=T0 + 1002)] == ["busy"]  # woken: due at once


def test_end_run_and_mark_running_and_suspend_run(store: Store) -> None:
    start(store, "r1", "r2")
    lease(store)
    with primitives(store) as tx:
        tx.mark_running("r1", T0 + 1)
        tx.end_run("r2", RunEnd("COMPLETED", output_json=b"1", attempt=2), T0 + 1, T0 + 9)
        tx.drop_run_work("r2")
    r1, r2 = store.get_run("r1"), store.get_run("r2")
    assert r1 is not None and r2 is not None
    assert (r1.status, r1.started_at) == ("RUNNING", T0)  # started by its lease: kept
    assert (r2.status, r2.output_json, r2.attempt, r2.ended_at) == ("COMPLETED", b"1", 2, T0 + 9)
    with primitives(store) as tx:
        tx.suspend_run("r1", RunEnd("RETRYING", due_at=T0 + 50, attempt=3), T0 + 2, T0 + 2)
    r1 = store.get_run("r1")
    assert r1 is not None
    assert (r1.status, r1.attempt, r1.started_at) == ("RETRYING", 3, T0)
    assert lease(store, now=T0 + 49) == []
    assert [h.run_id for h in lease(store, now=T0 + 50)] == ["r1"]


def test_spent_runs_are_those_leased_max_passes_times_and_fail_run_ends_one(store: Store) -> None:
    start(store, "r1")
    lease(store)  # r1: one pass without progress
    start(store, "r2", now=T0 + 1)
    with store.transaction() as opened:
        tx = cast(LeasePrimitives, opened)
        assert tx.spent_runs(["r1", "r2"], 1) == [SpentRun("r1", None, None, "fn")]
        assert tx.spent_runs(["r1", "r2"], 2) == []
        tx.fail_run("r1", {"name": "Error", "message": "spent"}, T0 + 5)
    r1 = store.get_run("r1")
    assert r1 is not None
    assert (r1.status, r1.error, r1.ended_at, r1.started_at) == (
        "FAILED",
        {"name": "Error", "message": "spent"},
        T0 + 5,
        T0,
    )


def test_put_steps_if_unsettled_never_overwrites_a_settled_step(store: Store) -> None:
    start(store, "r1")
    lease(store)
    with primitives(store) as tx:
        tx.put_steps([step("r1", "a", 0, output=1), step("r1", "b", 1, "RUNNING")])
        tx.put_steps_if_unsettled([step("r1", "a", 0, output=2), step("r1", "b", 1, output=3)])
        tx.put_steps_if_unsettled([step("r1", "c", 2, output=4)])
    assert [loads(s.output_json) for s in store.get_steps("r1")] == [1, 3, 4]


def test_append_history_names_the_worker(store: Store) -> None:
    start(store, "r1")
    with primitives(store) as tx:
        tx.append_history([step_history("r1", "A"), step_history("r1", "B")], "w-9")
    rows = store.get_history("r1")
    assert history_kinds(store, "r1") == ["RUN_QUEUED", "A", "B"]
    assert [r.worker_id for r in rows[1:]] == ["w-9", "w-9"]


def step_history(run_id: str, kind: str) -> HistoryRecord:
    return HistoryRecord(run_id, T0, kind, worker_id="ignored")
