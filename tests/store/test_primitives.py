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
from stepline.store._ingest_rules import IngestTx
from stepline.store._primitives import EndedRun, ResumedWait
from stepline.store.records import Admission, EventIngest, HistoryRecord, MatcherSpec, NewRun

from .builders import (
    DAY,
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


@contextmanager
def primitives(store: Store) -> Iterator[IngestTx]:
    """The backend's transaction, seen as the primitives the shared algorithms use."""
    with store.transaction() as tx:
        yield cast(IngestTx, tx)


def test_insert_event_is_new_once_per_sender_id_within_a_day(store: Store) -> None:
    with primitives(store) as tx:
        assert tx.insert_event(event("e1", sender_id="s"), T0)
        assert not tx.insert_event(event("e2", sender_id="s"), T0 + 10)
        assert tx.insert_event(event("e3"), T0)  # no sender id: always new
        assert tx.insert_event(event("e4"), T0)
    with primitives(store) as tx:
        assert not tx.insert_event(event("e5", sender_id="s"), T0 + DAY - 1)
        assert tx.insert_event(event("e6", sender_id="s"), T0 + DAY + 1)  # seen a day ago
        assert not tx.insert_event(event("e7", sender_id="s"), T0 + DAY + 2)
    ids = ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert [e.internal_id for e in store.get_events(ids)] == ids  # duplicates are stored too


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
        found = tx.indexed_waits("payment/received", "data.orderId", key("o-1"))
        assert [w.run_id for w in found] == ["r1"]
        assert (found[0].wait_id, found[0].step_hash) == ("w-r1", "h-wait")
        assert tx.indexed_waits("payment/received", "data.orderId", key("o-9")) == []
        assert [w.run_id for w in tx.unindexed_waits("payment/received")] == ["r3"]
        assert list(tx.wait_paths("nothing/waits")) == []
        assert tx.unindexed_waits("nothing/waits") == []


def test_delete_wait_is_won_once(store: Store) -> None:
    pending_wait(store, "r1", None)
    with primitives(store) as tx:
        assert tx.delete_wait("w-r1")
        assert not tx.delete_wait("w-r1")
        assert not tx.delete_wait("never")
        assert tx.unindexed_waits("payment/received") == []


def test_resume_waits_completes_the_step_wakes_the_run_and_logs(store: Store) -> None:
    pending_wait(store, "r1", None, expires_at=T0 + 1000)
    with primitives(store) as tx:
        assert tx.delete_wait("w-r1")
        tx.resume_waits([ResumedWait("r1", "h-wait", b'{"n":1}', "e-9")], T0 + 5)
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
        found = tx.indexed_matchers("order/cancelled", "data.id", '"a"', T0 + 60)
        assert [(m.run_id, m.step_hash) for m in found] == [("r1", "")]
        assert tx.indexed_matchers("order/cancelled", "data.id", '"a"', T0 + 61) == []
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


def test_append_history_names_the_worker(store: Store) -> None:
    start(store, "r1")
    with primitives(store) as tx:
        tx.append_history([step_history("r1", "A"), step_history("r1", "B")], "w-9")
    rows = store.get_history("r1")
    assert history_kinds(store, "r1") == ["RUN_QUEUED", "A", "B"]
    assert [r.worker_id for r in rows[1:]] == ["w-9", "w-9"]


def step_history(run_id: str, kind: str) -> HistoryRecord:
    return HistoryRecord(run_id, T0, kind, worker_id="ignored")
