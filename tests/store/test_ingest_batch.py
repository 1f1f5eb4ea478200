"""One ingest verb, many events: the index is read once for the batch (``_ingest_rules``), yet
each event sees what the events before it did — runs they created with ``cancel_on``, waits
they resolved, runs they cancelled."""

from __future__ import annotations

from typing import cast

from stepline.expressions import load_match
from stepline.serde import loads
from stepline.store import Store
from stepline.store._pass_rules import PassTx
from stepline.store.records import RESUMED, Admission, EventIngest, MatcherSpec, NewRun
from stepline.store.sqlite._multirow import CHUNK

from .builders import (
    T0,
    CountingMatcher,
    event,
    history_kinds,
    ingest,
    lease,
    lease_run,
    start,
    suspend_on_wait,
    wait,
)


def cancellable(run_id: str, order_id: str, name: str = "order/cancelled") -> EventIngest:
    """An event that starts ``run_id``, cancelled by ``name`` (default ``order/cancelled``)
    for ``order_id``."""
    expression = f'async.data.orderId == "{order_id}"'
    spec = MatcherSpec(name, expression, "data.orderId", order_id, None)
    run = NewRun(run_id, "fn", (f"ev-{run_id}",), admission=Admission(cancel_on=(spec,)))
    return EventIngest(event(f"ev-{run_id}"), (run,))


def cancel_order(internal_id: str, order_id: str, name: str = "order/cancelled") -> EventIngest:
    return EventIngest(event(internal_id, name, {"orderId": order_id}))


def pay(internal_id: str, order_id: str) -> EventIngest:
    return EventIngest(event(internal_id, "payment/received", {"orderId": order_id}))


def waiting(store: Store, run_id: str, order_id: str) -> None:
    start(store, run_id)
    pending = wait(run_id, f"w-{run_id}", f'async.data.orderId == "{order_id}"')
    suspend_on_wait(store, lease_run(store, run_id), pending)


def test_a_run_created_earlier_in_the_batch_is_cancelled_by_a_later_event(store: Store) -> None:
    ingest(store, cancellable("old", "o-1"))
    created, first, second = ingest(
        store,
        cancellable("r1", "o-2"),
        cancel_order("c-1", "o-2"),
        cancel_order("c-2", "o-1"),
        now=T0 + 1,
    )
    assert created.run_ids == ("r1",)
    assert first.cancelled == (("r1", "fn"),)
    assert second.cancelled == (("old", "fn"),)
    for run_id in ("r1", "old"):
        record = store.get_run(run_id)
        assert record is not None and record.status == "CANCELLED"


def test_a_wait_is_resolved_by_the_first_matching_event_of_the_batch_only(store: Store) -> None:
    start(store, "r1")  # a wait the index alone does not decide: the matcher is asked
    expression = 'async.data.orderId == "o-1" && async.name == "payment/received"'
    suspend_on_wait(store, lease_run(store, "r1"), wait("r1", "w-r1", expression))
    matcher = CountingMatcher()
    first, second = ingest(store, pay("p-1", "o-1"), pay("p-2", "o-1"), now=T0 + 1, matcher=matcher)
    assert (first.resumed_run_ids, second.resumed_run_ids) == (("r1",), ())
    assert matcher.asked == ["w-r1"]  # the second event is not asked about a resolved wait
    assert history_kinds(store, "r1").count("WAIT_MATCHED") == 1


def test_a_run_cancelled_earlier_in_the_batch_is_not_resumed(store: Store) -> None:
    ingest(store, cancellable("r1", "o-1"))
    pending = wait("r1", "w-r1", 'async.data.orderId == "o-1"')
    suspend_on_wait(store, lease_run(store, "r1"), pending)
    cancelled, paid = ingest(store, cancel_order("c-1", "o-1"), pay("p-1", "o-1"), now=T0 + 1)
    assert cancelled.cancelled == (("r1", "fn"),)
    assert paid.resumed_run_ids == ()
    assert history_kinds(store, "r1")[-1] == "RUN_CANCELLED"
    [step] = store.get_steps("r1")
    assert step.status == "PENDING"


def test_each_event_of_a_batch_resumes_the_runs_waiting_for_its_values(store: Store) -> None:
    for i in range(6):
        waiting(store, f"r{i}", f"o-{i % 3}")
    results = ingest(store, *(pay(f"p-{i}", f"o-{i}") for i in (2, 0, 9, 1)), now=T0 + 1)
    assert [sorted(r.resumed_run_ids) for r in results] == [
        ["r2", "r5"],
        ["r0", "r3"],
        [],
        ["r1", "r4"],
    ]


def test_a_batch_of_more_rows_than_a_statement_writes_each_once_in_order(store: Store) -> None:
    """More events, resolved waits and effects than one multi-row statement holds (SQLite
    writes them in statements of ``CHUNK`` rows, the rest a row at a time): every event is
    stored, every run woken with its WAIT_MATCHED and its step's output, every effect
    recorded, once each."""
    count = 2 * CHUNK + 7
    for i in range(count):
        waiting(store, f"r{i:03d}", f"o-{i}")
    ids = [f"p-{i:03d}" for i in range(count)]
    results = ingest(store, *(pay(ids[i], f"o-{i}") for i in range(count)), now=T0 + 1)
    assert [r.resumed_run_ids for r in results] == [(f"r{i:03d}",) for i in range(count)]
    assert [e.data for e in store.get_events(ids)] == [{"orderId": f"o-{i}"} for i in range(count)]
    runs = [f"r{i:03d}" for i in range(count)]
    assert [(s.run_id, s.due_at, s.waits) for s in store.queue_states(runs, T0 + 1)] == [
        (run_id, T0 + 1, ()) for run_id in runs
    ]
    for i, run_id in enumerate(runs):
        [matched] = [h for h in store.get_history(run_id) if h.kind == "WAIT_MATCHED"]
        assert matched.data == {"event_id": ids[i]}
        [resolved] = store.get_steps(run_id)
        assert resolved.status == "COMPLETED"
        assert resolved.output_json is not None and loads(resolved.output_json)["id"] == ids[i]
    effects = {(r.event_id, r.effect, r.run.run_id) for r in store.event_runs(ids)}
    assert effects == {(ids[i], RESUMED, runs[i]) for i in range(count)}


def test_a_batch_cancelling_more_runs_than_a_statement_ends_each_once(store: Store) -> None:
    """The runs one verb cancels (on SQLite ended, and their queue items, matchers and waits
    removed, in statements of ``CHUNK`` runs per error, the rest a run at a time): every run
    once, with its own event's error and RUN_CANCELLED, whether it was queued, leased (its
    lease token kept for its pass) or waiting (its wait removed)."""
    count = 4 * CHUNK + 7
    names = ("order/cancelled", "order/voided")  # two errors: two groups of statements
    runs = [f"r{i:03d}" for i in range(count)]
    for i, run_id in enumerate(runs):
        ingest(store, cancellable(run_id, f"o-{i}", names[i % 2]))
    held = lease(store, limit=2 * CHUNK + 11)
    tokens = {h.run_id: h.token for h in held[::2]}  # still leased when cancelled
    for h in held[1::2]:  # waiting: a wait each to remove, and no lease
        suspend_on_wait(store, h, wait(h.run_id, f"w-{h.run_id}", f'async.data.n == "{h.run_id}"'))
    ids = [f"c-{i:03d}" for i in range(count)]
    cancels = (cancel_order(ids[i], f"o-{i}", names[i % 2]) for i in range(count))
    results = ingest(store, *cancels, now=T0 + 1)
    assert [r.cancelled for r in results] == [((run_id, "fn"),) for run_id in runs]
    for i, run_id in enumerate(runs):
        record = store.get_run(run_id)
        assert record is not None
        message = f"cancelled by event {names[i % 2]}"
        assert (record.status, record.ended_at, record.error) == (
            "CANCELLED",
            T0 + 1,
            {"name": "Cancelled", "message": message},
        )
        assert history_kinds(store, run_id).count("RUN_CANCELLED") == 1
        state = store.load_run(run_id)
        assert state is not None and state.waits == []
    assert lease(store, now=T0 + 10_000) == []  # no queue item left
    with store.transaction() as tx:
        primitives = cast(PassTx, tx)
        values = [f"o-{i}" for i in range(count)]
        for name in names:
            assert primitives.indexed_matchers(name, "data.orderId", values, T0 + 1) == []
        for run_id in runs:
            token = tokens.get(run_id)
            assert primitives.cancelled_lease(run_id) == (None if token is None else (token, "w1"))
    assert len(held) == 2 * CHUNK + 11


def test_a_batch_mixing_events_with_and_without_sender_ids_stores_each_as_sent(
    store: Store,
) -> None:
    """A batch of more events than a statement holds, every third with a sender id (one of
    them repeated): each is stored with its id (or none), the repeat as a duplicate."""
    count = 2 * CHUNK + 7
    sender = [f"s-{i}" if i % 3 == 0 else None for i in range(count)]
    sender[count - 1] = "s-0"  # a repeat of the first event's id
    items = [EventIngest(event(f"e-{i:03d}", sender_id=sender[i])) for i in range(count)]
    results = ingest(store, *items)
    assert [r.duplicate for r in results] == [i == count - 1 for i in range(count)]
    stored = store.get_events([f"e-{i:03d}" for i in range(count)])
    assert [e.id for e in stored] == sender


def test_the_index_decides_a_cancel_matcher_on_one_string_equality(store: Store) -> None:
    """As for waits: a cancel matcher found under the event's string value, whose expression is
    exactly that equality, cancels its run without asking the matcher (the lookup compared the
    two strings); a compound one is still asked about."""
    compound = 'async.data.orderId == "o-1" && async.data.amount > 1'
    spec = MatcherSpec("order/cancelled", compound, "data.orderId", "o-1", None)
    run = NewRun("r2", "fn", ("ev-r2",), admission=Admission(cancel_on=(spec,)))
    ingest(store, cancellable("r1", "o-1"), EventIngest(event("ev-r2"), (run,)))
    load_match('async.data.orderId == "o-1"')  # cached, as the engine leaves it when it plans
    matcher = CountingMatcher()
    paid = EventIngest(event("c-1", "order/cancelled", {"orderId": "o-1", "amount": 5}))
    with store.transaction() as tx:
        [result] = tx.ingest([paid], T0 + 1, matcher)
    assert sorted(result.cancelled) == [("r1", "fn"), ("r2", "fn")]
    assert len(matcher.asked) == 1  # r2's compound matcher only


def test_a_value_of_another_type_under_the_same_key_does_not_cancel(store: Store) -> None:
    ingest(store, cancellable("r1", "5"))  # async.data.orderId == "5"
    load_match('async.data.orderId == "5"')
    [result] = ingest(store, cancel_order_of("c-1", 5), now=T0 + 1)
    assert result.cancelled == ()
    [result] = ingest(store, cancel_order_of("c-2", "5"), now=T0 + 2)
    assert result.cancelled == (("r1", "fn"),)


def cancel_order_of(internal_id: str, order_id: object) -> EventIngest:
    return EventIngest(event(internal_id, "order/cancelled", {"orderId": order_id}))
