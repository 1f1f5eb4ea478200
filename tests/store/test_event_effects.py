"""What each event did to runs (issue 9: the event stream shows the runs each event started,
resumed or cancelled), on every backend: recorded in the verb that had the effect, read back by
``event_runs``, purged with the run."""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import (
    Admission,
    EventIngest,
    MatcherSpec,
    NewRun,
    PassCommit,
    RunEnd,
    RunFilter,
)

from .builders import T0, commit, event, ingest, lease_run, start, suspend_on_wait, wait

PAID = 'async.data.orderId == "o-1"'
CANCEL_ON = (MatcherSpec("order/cancelled", None, None, None, None),)


def effects(store: Store, *event_ids: str, limit: int = 100) -> list[tuple[str, str, str]]:
    return [(r.event_id, r.effect, r.run.run_id) for r in store.event_runs(event_ids, limit)]


def waiting_run(store: Store, run_id: str, admission: Admission | None = None) -> None:
    """Start ``run_id`` (event ``ev-<run_id>``) and suspend it on a wait for order o-1's
    payment."""
    run = NewRun(run_id, "fn", (f"ev-{run_id}",), admission=admission or Admission())
    ingest(store, EventIngest(event(f"ev-{run_id}"), (run,)))
    suspend_on_wait(store, lease_run(store, run_id), wait(run_id, f"w-{run_id}", PAID))


def paid(internal_id: str, *new_runs: NewRun, sender_id: str | None = None) -> EventIngest:
    data = {"orderId": "o-1"}
    return EventIngest(event(internal_id, "payment/received", data, sender_id=sender_id), new_runs)


def test_the_runs_an_event_started_newest_first(store: Store) -> None:
    runs = (NewRun("r1", "fn-a", ("e1",)), NewRun("r2", "fn-b", ("e1",)))
    ingest(store, EventIngest(event("e1"), runs))
    ingest(store, EventIngest(event("e2"), (NewRun("r3", "fn-a", ("e2",)),)), now=T0 + 1)
    ingest(store, EventIngest(event("e3")))
    assert effects(store, "e1") == [("e1", "started", "r2"), ("e1", "started", "r1")]
    assert effects(store, "e1", "e2", "e3") == [
        ("e1", "started", "r2"),
        ("e1", "started", "r1"),
        ("e2", "started", "r3"),
    ]
    assert effects(store, "e1", limit=1) == [("e1", "started", "r2")]
    assert effects(store, "unknown") == []
    [record] = [r for r in store.event_runs(["e2"]) if r.run.run_id == "r3"]
    assert (record.run.function_id, record.run.status) == ("fn-a", "QUEUED")


def test_an_event_that_resolves_a_wait_resumed_its_run(store: Store) -> None:
    waiting_run(store, "r1")
    waiting_run(store, "r2")
    [result] = ingest(store, paid("pay"), now=T0 + 5)
    assert set(result.resumed_run_ids) == {"r1", "r2"}
    assert sorted(effects(store, "pay")) == [("pay", "resumed", "r1"), ("pay", "resumed", "r2")]
    assert effects(store, "ev-r1") == [("ev-r1", "started", "r1")]
    # the runs list filtered by event keeps meaning the runs it started
    assert store.list_runs(RunFilter(event_id="pay")) == []


def test_an_event_matching_cancel_on_cancelled_its_run(store: Store) -> None:
    run = NewRun("r1", "fn", ("ev-r1",), admission=Admission(cancel_on=CANCEL_ON))
    ingest(store, EventIngest(event("ev-r1"), (run,)))
    [result] = ingest(store, EventIngest(event("stop", "order/cancelled")), now=T0 + 1)
    assert result.cancelled == (("r1", "fn"),)
    assert effects(store, "stop") == [("stop", "cancelled", "r1")]
    assert effects(store, "ev-r1") == [("ev-r1", "started", "r1")]


def test_one_event_resumes_a_run_then_its_singleton_replaces_it(store: Store) -> None:
    singleton = Admission(singleton_key="fn:o-1", singleton_mode="cancel")
    waiting_run(store, "r1", singleton)
    newer = NewRun("r2", "fn", ("pay",), admission=singleton)
    [result] = ingest(store, paid("pay", newer), now=T0 + 5)
    assert (result.resumed_run_ids, result.run_ids, result.cancelled) == (
        ("r1",),
        ("r2",),
        (("r1", "fn"),),
    )
    assert effects(store, "pay") == [
        ("pay", "started", "r2"),
        ("pay", "cancelled", "r1"),
        ("pay", "resumed", "r1"),
    ]


def test_a_duplicate_starts_nothing_but_still_resumes(store: Store) -> None:
    ingest(store, EventIngest(event("first", "payment/received", sender_id="s-1")))
    waiting_run(store, "r1")
    [result] = ingest(store, paid("again", NewRun("r9", "fn", ("again",)), sender_id="s-1"))
    assert result.duplicate
    assert effects(store, "again") == [("again", "resumed", "r1")]
    assert effects(store, "first") == []


def test_an_event_sent_by_a_pass_records_what_it_did(store: Store) -> None:
    waiting_run(store, "r1")
    start(store, "sender", now=T0 + 1)
    held = lease_run(store, "sender", now=T0 + 1)
    sent = paid("sent", NewRun("r2", "fn", ("sent",)))
    commit(store, PassCommit("sender", held.token, events=[sent], end=RunEnd("COMPLETED")), T0 + 2)
    assert effects(store, "sent") == [("sent", "started", "r2"), ("sent", "resumed", "r1")]


def test_effects_are_purged_with_their_runs(store: Store) -> None:
    run = NewRun("r1", "fn", ("ev-r1",), admission=Admission(cancel_on=CANCEL_ON))
    ingest(store, EventIngest(event("ev-r1"), (run,)))
    ingest(store, EventIngest(event("stop", "order/cancelled")), now=T0 + 1)
    waiting_run(store, "live")
    ingest(store, paid("pay"), now=T0 + 1)
    with store.transaction() as tx:
        purged = tx.purge_before(T0 + 2, 100)
    assert (purged.runs, purged.events) == (1, 2)  # r1 with the events that only it refers to
    assert effects(store, "ev-r1", "stop") == []
    assert store.get_events(["ev-r1", "stop"]) == []
    assert effects(store, "pay") == [("pay", "resumed", "live")]  # kept with its live run
    assert [e.internal_id for e in store.get_events(["pay"])] == ["pay"]


def test_a_run_an_event_cancelled_frees_its_singleton_key_for_the_next_event_of_the_batch(
    store: Store,
) -> None:
    # SQLite writes a batch's cancellations when its ingest verb ends: until then the singleton
    # check must see the cancelled run as ended, as every backend does
    skip = Admission(singleton_key="fn:k", singleton_mode="skip", cancel_on=CANCEL_ON)
    ingest(store, EventIngest(event("ev-r1"), (NewRun("r1", "fn", ("ev-r1",), admission=skip),)))
    stop = EventIngest(event("stop", "order/cancelled"))
    again = EventIngest(event("ev-r2"), (NewRun("r2", "fn", ("ev-r2",), admission=skip),))
    first, second = ingest(store, stop, again, now=T0 + 1)
    assert first.cancelled == (("r1", "fn"),)
    assert (second.run_ids, second.skipped) == (("r2",), ())
    assert effects(store, "stop") == [("stop", "cancelled", "r1")]
