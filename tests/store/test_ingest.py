"""Ingestion: events stored, runs created and listed, de-duplication by sender id (24 h)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pgtest
from stepline.store import Store
from stepline.store.records import EventIngest, NewRun, RunFilter

from .builders import DAY, T0, event, history_kinds, ingest, lease, start, trigger
from .conftest import BACKENDS, open_backend


def test_ingested_events_are_readable_in_the_order_asked(store: Store) -> None:
    first = event("e1", "order/created", {"orderId": "o-1", "amount": 12.5}, sender_id="s-1")
    second = event("e2", "order/paid", {"nested": {"list": [1, 2]}}, ts=T0 + 1)
    ingest(store, EventIngest(first), EventIngest(second))

    assert store.get_events(["e2", "e1"]) == [second, first]
    assert store.get_events(["e1", "missing"]) == [first]
    assert store.get_events([]) == []


def test_ingest_creates_queued_runs_with_a_history_row(store: Store) -> None:
    e = event("e1")
    runs = (NewRun("r1", "fn-a", ("e1",)), NewRun("r2", "fn-b", ("e1",)))
    [result] = ingest(store, EventIngest(e, runs), now=T0 + 5)

    assert result.internal_id == "e1"
    assert not result.duplicate
    assert result.run_ids == ("r1", "r2")
    assert result.resumed_run_ids == ()
    for run_id, function_id in (("r1", "fn-a"), ("r2", "fn-b")):
        run = store.get_run(run_id)
        assert run is not None
        assert (run.function_id, run.status, run.event_ids) == (function_id, "QUEUED", ["e1"])
        assert run.created_at == T0 + 5
        assert (run.started_at, run.ended_at, run.output_json, run.error) == (None,) * 4
        assert history_kinds(store, run_id) == ["RUN_QUEUED"]
        assert store.get_history(run_id)[0].ts == T0 + 5
        assert store.get_steps(run_id) == []
    assert store.get_run("r3") is None


def test_a_new_run_is_due_at_once(store: Store) -> None:
    assert store.next_due_at() is None
    start(store, "r1", now=T0 + 7)
    assert store.next_due_at() == T0 + 7
    assert lease(store, now=T0 + 6) == []
    assert [held.run_id for held in lease(store, now=T0 + 7)] == ["r1"]


def test_load_run_has_the_trigger_events(store: Store) -> None:
    e1, e2 = event("e1", data={"n": 1}), event("e2", data={"n": 2})
    ingest(store, EventIngest(e1), EventIngest(e2, (NewRun("r1", "fn", ("e1", "e2")),)))

    state = store.load_run("r1")
    assert state is not None
    assert state.run.run_id == "r1"
    assert state.events == [e1, e2]
    assert state.steps == {}
    assert state.waits == []
    assert store.load_run("nope") is None


def test_list_runs_filters_and_orders_newest_first(store: Store) -> None:
    # Run ids deliberately do not sort in creation order: newest first means by creation time.
    ingest(store, EventIngest(event("e1"), (NewRun("run-c", "fa", ("e1",)),)), now=T0)
    ingest(store, EventIngest(event("e2"), (NewRun("run-a", "fb", ("e2",)),)), now=T0 + 1)
    ingest(store, EventIngest(event("e3"), (NewRun("run-b", "fa", ("e3",)),)), now=T0 + 2)
    ingest(store, EventIngest(event("e4"), (NewRun("run-d", "fa", ("e1", "e4")),)), now=T0 + 3)
    with store.transaction() as tx:
        assert tx.cancel_run("run-b", T0 + 4, "test")

    def ids(**query: object) -> list[str]:
        return [run.run_id for run in store.list_runs(RunFilter(**query))]  # type: ignore[arg-type]

    assert ids() == ["run-d", "run-b", "run-a", "run-c"]
    assert ids(function_id="fa") == ["run-d", "run-b", "run-c"]
    assert ids(status="QUEUED") == ["run-d", "run-a", "run-c"]
    assert ids(status="CANCELLED") == ["run-b"]
    assert ids(function_id="fa", status="QUEUED") == ["run-d", "run-c"]
    assert ids(event_id="e1") == ["run-d", "run-c"]
    assert ids(event_id="e3", status="QUEUED") == []
    assert ids(limit=2) == ["run-d", "run-b"]
    assert ids(limit=0) == []
    assert ids(function_id="fa", limit=1) == ["run-d"]
    assert ids(function_id="nobody") == []


def test_same_sender_id_within_24h_is_a_duplicate_with_no_runs(store: Store) -> None:
    [first] = ingest(store, trigger_with_id("e1", "r1", "dup-1"), now=T0)
    [again] = ingest(store, trigger_with_id("e2", "r2", "dup-1"), now=T0 + DAY - 1)

    assert (first.duplicate, first.run_ids) == (False, ("r1",))
    assert (again.internal_id, again.duplicate, again.run_ids) == ("e2", True, ())
    assert store.get_run("r2") is None
    assert [run.run_id for run in store.list_runs(RunFilter())] == ["r1"]
    assert [held.run_id for held in lease(store, now=T0 + DAY)] == ["r1"]


def test_duplicates_within_one_batch(store: Store) -> None:
    results = ingest(
        store,
        trigger_with_id("e1", "r1", "same"),
        trigger_with_id("e2", "r2", "same"),
        trigger_with_id("e3", "r3", "other"),
    )
    assert [r.duplicate for r in results] == [False, True, False]
    assert [r.run_ids for r in results] == [("r1",), (), ("r3",)]


def test_sender_id_is_accepted_again_after_24h(store: Store) -> None:
    ingest(store, trigger_with_id("e1", "r1", "dup-1"), now=T0)
    [later] = ingest(store, trigger_with_id("e2", "r2", "dup-1"), now=T0 + DAY + 1)
    assert (later.duplicate, later.run_ids) == (False, ("r2",))
    assert store.get_run("r2") is not None
    # The window restarts at the accepted event.
    [third] = ingest(store, trigger_with_id("e3", "r3", "dup-1"), now=T0 + DAY + 2)
    assert third.duplicate


def test_events_without_sender_id_are_never_duplicates(store: Store) -> None:
    results = ingest(store, trigger("r1"), trigger("r2"), now=T0)
    assert [r.duplicate for r in results] == [False, False]


def test_a_rolled_back_transaction_leaves_nothing(store: Store) -> None:
    class Boom(Exception):
        pass

    def ingest_then_fail() -> None:
        with store.transaction() as tx:
            tx.ingest([trigger_with_id("e1", "r1", "dup-1")], T0, lambda w, e: True)
            raise Boom

    with pytest.raises(Boom):
        ingest_then_fail()
    assert store.get_run("r1") is None
    assert store.get_events(["e1"]) == []
    assert store.next_due_at() is None
    # The sender id was not remembered either.
    [result] = ingest(store, trigger_with_id("e2", "r2", "dup-1"))
    assert not result.duplicate


def trigger_with_id(internal_id: str, run_id: str, sender_id: str) -> EventIngest:
    return EventIngest(
        event(internal_id, sender_id=sender_id), (NewRun(run_id, "fn", (internal_id,)),)
    )


# Property: within the window, de-duplication by sender id behaves as a set that forgets an id
# 24 h after it was last accepted.
_SENDS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([0.0, 1.0, DAY - 1, DAY, DAY + 1])),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(sends=_SENDS)
def test_dedup_is_a_set_with_a_24h_memory(
    kind: str, sends: list[tuple[str, float]], request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_database") if kind == "postgres" else None
    if url is not None:
        pgtest.empty_database(url)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_backend(kind, Path(tmp) / "s.db", url)
        try:
            accepted_at: dict[str, float] = {}
            accepted = 0
            now = T0
            for n, (sender_id, gap) in enumerate(sends):
                now += gap
                [result] = ingest(store, trigger_with_id(f"e{n}", f"r{n}", sender_id), now=now)
                last = accepted_at.get(sender_id)
                expect_duplicate = last is not None and now - last < DAY
                assert result.duplicate == expect_duplicate, (sender_id, now - T0)
                assert (store.get_run(f"r{n}") is None) == expect_duplicate
                if not expect_duplicate:
                    accepted_at[sender_id] = now
                    accepted += 1
            assert len(store.list_runs(RunFilter(limit=1000))) == accepted
        finally:
            store.close()


def test_ingest_of_unknown_event_creates_nothing(store: Store) -> None:
    [result] = ingest(store, EventIngest(event("e1", "nobody/listens")))
    assert result.run_ids == ()
    assert store.list_runs(RunFilter()) == []
    assert [held.run_id for held in lease(store, now=T0 + 1)] == []
