"""An event's ``v`` (the sender's version of its shape, Inngest's ``v``) is stored and given back
by every store, in each way an event is read: by id, listed, with its run, and as the output of
the wait it resolved (``EventRecord.payload``, ``v`` last, only when given)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stepline.serde import loads
from stepline.store import Store
from stepline.store.records import EventFilter, EventIngest, NewRun

from .builders import T0, event, ingest, lease_run, suspend_on_wait, wait

VERSION = "2026-12-01.1"


@pytest.mark.parametrize("sender_id", [None, "sender-1"])
def test_an_events_v_is_read_back_by_id_listed_and_with_its_run(
    store: Store, sender_id: str | None
) -> None:
    versioned = replace(event("e1", data={"n": 1}, sender_id=sender_id), v=VERSION)
    plain = event("e2", data={"n": 2})
    ingest(store, EventIngest(versioned, (NewRun("r1", "fn", ("e1",)),)), EventIngest(plain))

    assert store.get_events(["e1", "e2"]) == [versioned, plain]
    assert [found.event.v for found in store.list_events(EventFilter())] == [None, VERSION]
    assert store.load_run("r1").events == [versioned]  # type: ignore[union-attr]
    held = lease_run(store, "r1")
    state = held.loaded() if held.loaded is not None else store.load_run("r1")
    assert state is not None
    assert [e.v for e in state.events] == [VERSION]
    assert state.events[0].payload()["v"] == VERSION
    assert "v" not in plain.payload()


@pytest.mark.parametrize("sender_id", [None, "sender-1"])
def test_a_wait_resolved_by_a_versioned_event_has_its_v(
    store: Store, sender_id: str | None
) -> None:
    ingest(store, EventIngest(event("e0"), (NewRun("r1", "fn", ("e0",)),)))
    pending = wait("r1", "w-r1", 'async.data.orderId == "o-1"')
    suspend_on_wait(store, lease_run(store, "r1"), pending)

    paying = replace(
        event("pay", "payment/received", {"orderId": "o-1"}, sender_id=sender_id), v=VERSION
    )
    [result] = ingest(store, EventIngest(paying), now=T0 + 1)

    assert result.resumed_run_ids == ("r1",)
    state = store.load_run("r1")
    assert state is not None
    output = loads(state.steps["h-wait"].output_json)
    assert output == paying.payload()
    assert output["v"] == VERSION
