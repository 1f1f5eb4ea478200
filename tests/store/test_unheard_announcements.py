"""The ``UnheardEvents`` verbs (memory and SQLite; PostgreSQL ingests announcements as any
event): a run's trigger events read still encoded, and events stored only if nothing hears
them (no wait, no cancel matcher of their names, no function of another app listening)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stepline.serde import dumps_exact
from stepline.store import Store
from stepline.store.capabilities import UnheardEvents
from stepline.store.records import (
    Admission,
    EventFilter,
    EventIngest,
    EventRecord,
    FunctionSet,
    MatcherSpec,
    NewRun,
    TriggerRow,
)

from .builders import T0, ingest, lease, start, suspend_on_wait, wait
from .conftest import open_backend
from .test_ingest_batch import cancel_order, cancellable

CANCELLED = "inngest/function.cancelled"
FINISHED = "inngest/function.finished"
APP = FunctionSet("shop", ("fn",))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend whose transactions are ``UnheardEvents``."""
    opened = open_backend(request.param, tmp_path / "s.db")
    yield opened
    opened.close()


def _started_by(store: Store, run_id: str, *events: EventRecord) -> None:
    ids = tuple(e.internal_id for e in events)
    items = [EventIngest(e) for e in events[:-1]]
    items.append(EventIngest(events[-1], (NewRun(run_id, "fn", ids),)))
    ingest(store, *items)


def _store_unheard(store: Store, *names: str, sender: FunctionSet | None = APP) -> bool:
    rows = [(f"a{i}", name, b'{"run_id":"r1"}') for i, name in enumerate(names)]
    with store.transaction() as tx:
        assert isinstance(tx, UnheardEvents)
        return tx.store_unheard(rows, T0 + 5, sender)


def _stored(store: Store, name: str) -> list[EventRecord]:
    return [s.event for s in store.list_events(EventFilter(name=name))]


def test_a_runs_events_encoded_are_their_payloads_as_run_events_gives_them(
    store: Store,
) -> None:
    odd = {"é": ["ü", 1.5, -(2**63), 2**64 - 1, None, True], 'q"\\\n': {"x": [{}]}}
    first = EventRecord("e1", "batch/item", odd, {"who": "ñ"}, "sender-1", T0 + 0.0017)
    second = EventRecord("e2", "batch/item", {}, {}, None, T0 + 2.5)
    _started_by(store, "r1", first, second)
    start(store, "r2")
    ingest(store, cancellable("r3", "o-3"))
    with store.transaction() as tx:
        assert isinstance(tx, UnheardEvents)
        # r3 cancelled in this transaction (SQLite reads its events' ids from the run it
        # cancelled), r1 and r2 not; "r9" does not exist
        tx.ingest([cancel_order("c3", "o-3")], T0 + 1, lambda w, e: True)
        run_ids = ["r1", "r2", "r3", "r9"]
        encoded = tx.encoded_run_events(run_ids)
        expected = [
            [(e.name, dumps_exact(e.payload())) for e in tx.run_events(run_id)]
            for run_id in run_ids
        ]
    assert encoded == expected
    assert [len(events) for events in encoded] == [2, 1, 1, 0]
    assert encoded[0][0][1].startswith(b'{"id":"sender-1","name":"batch/item"')


def test_a_cancelled_run_of_several_events_gets_them_all_in_order(store: Store) -> None:
    # SQLite reads a cancelled run's one event with its cancel matcher; a run of two events
    # has them read after
    spec = MatcherSpec(
        "order/cancelled", 'async.data.orderId == "o-1"', "data.orderId", "o-1", None
    )
    both = (NewRun("r1", "fn", ("e2", "e1"), admission=Admission(cancel_on=(spec,))),)
    ingest(store, EventIngest(EventRecord("e1", "a", {"n": 1}, {}, None, T0)))
    ingest(store, EventIngest(EventRecord("e2", "b", {"n": 2}, {}, None, T0), both))
    ingest(store, cancellable("r2", "o-1"))
    with store.transaction() as tx:
        assert isinstance(tx, UnheardEvents)
        [result] = tx.ingest([cancel_order("c1", "o-1")], T0 + 1, lambda w, e: True)
        assert sorted(result.cancelled) == [("r1", "fn"), ("r2", "fn")]
        encoded = tx.encoded_run_events(["r2", "r1"])
        expected = [
            [(e.name, dumps_exact(e.payload())) for e in tx.run_events(run_id)]
            for run_id in ["r2", "r1"]
        ]
    assert encoded == expected
    assert [[name for name, _ in events] for events in encoded] == [["order/created"], ["b", "a"]]


def test_events_nothing_hears_are_stored_as_sent_now_without_user_data(store: Store) -> None:
    assert _store_unheard(store, FINISHED, CANCELLED)
    [finished] = _stored(store, FINISHED)
    [cancelled] = _stored(store, CANCELLED)
    assert finished == EventRecord("a0", FINISHED, {"run_id": "r1"}, {}, None, T0 + 5)
    assert cancelled == EventRecord("a1", CANCELLED, {"run_id": "r1"}, {}, None, T0 + 5)
    assert store.event_runs(["a0", "a1"]) == []


def test_the_senders_own_listeners_do_not_hear_them(store: Store) -> None:
    with store.transaction() as tx:
        tx.sync_triggers("shop", [TriggerRow("shop", "fn", CANCELLED)], T0)
    assert _store_unheard(store, FINISHED, CANCELLED)


def test_another_apps_listener_hears_them_and_nothing_is_stored(store: Store) -> None:
    with store.transaction() as tx:
        tx.sync_triggers("emails", [TriggerRow("emails", "receipt", CANCELLED)], T0)
    assert not _store_unheard(store, FINISHED, CANCELLED)
    assert _stored(store, FINISHED) == _stored(store, CANCELLED) == []


@pytest.mark.parametrize("expression", [None, 'async.data.run_id == "r1"'])
def test_a_wait_on_the_name_hears_them_and_nothing_is_stored(
    store: Store, expression: str | None
) -> None:
    start(store, "w1")
    [held] = lease(store)
    suspend_on_wait(store, held, wait("w1", "wait-1", expression, event_name=CANCELLED))
    assert not _store_unheard(store, FINISHED, CANCELLED)
    assert _stored(store, FINISHED) == []


def test_a_cancel_matcher_on_the_name_hears_them_and_nothing_is_stored(store: Store) -> None:
    ingest(store, cancellable("r1", "o-1", name=CANCELLED))
    assert not _store_unheard(store, FINISHED, CANCELLED)
    assert not _store_unheard(store, CANCELLED, sender=None)
    assert _stored(store, CANCELLED) == []
