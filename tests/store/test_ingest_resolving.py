"""A batch whose events can only resolve waits the index decides (``_ingest_rules._resolving_only``)
keeps the ingest order: each event, in turn, resolves the waits found under its values that no
earlier event resolved, oldest first; a batch the index cannot decide goes the general way."""

from __future__ import annotations

from stepline.store import Store
from stepline.store.records import RESUMED, EventIngest

from .builders import (
    T0,
    CountingMatcher,
    event,
    history_kinds,
    ingest,
    lease_run,
    start,
    suspend_on_wait,
    wait,
)


def pay(internal_id: str, data: dict[str, object], sender_id: str | None = None) -> EventIngest:
    return EventIngest(event(internal_id, "payment/received", data, sender_id=sender_id))


def waiting(store: Store, run_id: str, expression: str, created_at: float = T0) -> None:
    start(store, run_id)
    pending = wait(run_id, f"w-{run_id}", expression, created_at=created_at)
    suspend_on_wait(store, lease_run(store, run_id), pending)


def test_a_value_s_waits_go_to_the_first_event_carrying_it_oldest_first(store: Store) -> None:
    waiting(store, "newer", 'async.data.orderId == "o-1"', created_at=T0)
    waiting(store, "older", 'async.data.orderId == "o-1"', created_at=T0 - 5)
    waiting(store, "other", 'async.data.orderId == "o-2"')
    results = ingest(
        store,
        pay("p-0", {"orderId": "o-9"}),
        pay("p-1", {"orderId": "o-1"}),
        pay("p-2", {"orderId": "o-1"}),
        pay("p-3", {"orderId": "o-2"}),
        now=T0 + 1,
    )
    assert [r.resumed_run_ids for r in results] == [(), ("older", "newer"), (), ("other",)]
    assert [r.duplicate for r in results] == [False] * 4
    for run_id in ("older", "newer", "other"):
        assert history_kinds(store, run_id).count("WAIT_MATCHED") == 1
    effects = {(r.event_id, r.effect, r.run.run_id) for r in store.event_runs(["p-1", "p-3"])}
    assert effects == {("p-1", RESUMED, "older"), ("p-1", RESUMED, "newer")} | {
        ("p-3", RESUMED, "other")
    }


def test_an_event_resolves_the_waits_of_each_indexed_path_oldest_first(store: Store) -> None:
    waiting(store, "by-order", 'async.data.orderId == "o-1"', created_at=T0)
    waiting(store, "by-customer", 'async.data.customer == "c-1"', created_at=T0 - 1)
    [paid] = ingest(store, pay("p-1", {"orderId": "o-1", "customer": "c-1"}), now=T0 + 1)
    assert paid.resumed_run_ids == ("by-customer", "by-order")
    for run_id in ("by-order", "by-customer"):
        [step] = store.get_steps(run_id)
        assert step.status == "COMPLETED"


def test_a_value_that_is_not_a_string_is_left_to_the_matcher(store: Store) -> None:
    """The wait is found under the text "42", which an integer 42 has too; the index does not
    decide it (CEL's ``"42" == 42`` is false): the matcher is asked, the wait stays pending,
    and the batch's other event still resolves its own wait."""
    waiting(store, "r42", 'async.data.orderId == "42"')
    waiting(store, "r1", 'async.data.orderId == "o-1"')
    matcher = CountingMatcher()
    number, text = ingest(
        store,
        pay("p-1", {"orderId": 42}),
        pay("p-2", {"orderId": "o-1"}),
        now=T0 + 1,
        matcher=matcher,
    )
    assert (number.resumed_run_ids, text.resumed_run_ids) == ((), ("r1",))
    assert matcher.asked == ["w-r42"]
    [step] = store.get_steps("r42")
    assert step.status == "PENDING"


def test_a_duplicate_event_still_resolves_a_wait(store: Store) -> None:
    [first] = ingest(store, pay("p-1", {"orderId": "o-1"}, sender_id="s-1"))
    waiting(store, "r1", 'async.data.orderId == "o-1"')
    [again] = ingest(store, pay("p-2", {"orderId": "o-1"}, sender_id="s-1"), now=T0 + 1)
    assert (first.duplicate, first.resumed_run_ids) == (False, ())
    assert (again.duplicate, again.resumed_run_ids) == (True, ("r1",))
