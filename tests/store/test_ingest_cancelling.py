"""A batch whose events can only cancel runs by matchers the index decides
(``_cancel_rules.cancelling_only``) keeps the ingest order: each event, in turn, cancels the runs
of the matchers found under its values that no earlier event (or transaction) ended, oldest
first; a batch the index cannot decide goes the general way (``_ingest_rules._Batch``), with the
same outcome."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import pytest

from stepline.expressions import load_match
from stepline.store import SQLiteStore, Store, _cancel_rules, _ingest_rules
from stepline.store.records import (
    CANCELLED,
    Admission,
    EventIngest,
    MatcherSpec,
    NewRun,
    PassCommit,
    RunEnd,
)

from .builders import (
    T0,
    CountingMatcher,
    commit,
    event,
    history_kinds,
    ingest,
    lease_run,
    start,
    step,
    suspend_on_wait,
    wait,
)

CANCEL = "order/cancelled"


def cancellable(
    run_id: str, order_id: str, path: str = "orderId", parent: tuple[str, str] | None = None
) -> EventIngest:
    """An event starting ``run_id``, which a ``order/cancelled`` whose ``data.<path>`` is
    ``order_id`` cancels (the one equality the index decides), with the parent step (run id,
    step hash) of an invoke, if any."""
    expression = f'async.data.{path} == "{order_id}"'
    load_match(expression)  # cached, as the engine leaves it when it plans the run
    spec = MatcherSpec(CANCEL, expression, f"data.{path}", order_id, None)
    parent_run, parent_step = parent if parent is not None else (None, None)
    run = NewRun(
        run_id, "fn", (f"ev-{run_id}",), parent_run, parent_step, Admission(cancel_on=(spec,))
    )
    return EventIngest(event(f"ev-{run_id}"), (run,))


def cancel(internal_id: str, data: dict[str, Any], sender_id: str | None = None) -> EventIngest:
    return EventIngest(event(internal_id, CANCEL, data, sender_id=sender_id))


def made(store: Store, *runs: EventIngest, at: float = T0) -> None:
    ingest(store, *runs, now=at)


def _general_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cancel_rules, "cancelling_only", lambda *args: None)


def test_a_value_s_runs_go_to_the_first_event_carrying_it_oldest_first(store: Store) -> None:
    made(store, cancellable("newer", "o-1"), at=T0)
    made(store, cancellable("older", "o-1"), at=T0 - 5)
    made(store, cancellable("other", "o-2"))
    matcher = CountingMatcher()
    results = ingest(
        store,
        cancel("c-0", {"orderId": "o-9"}),
        cancel("c-1", {"orderId": "o-1"}),
        cancel("c-2", {"orderId": "o-1"}),
        cancel("c-3", {"orderId": "o-2"}),
        now=T0 + 1,
        matcher=matcher,
    )
    assert [r.cancelled for r in results] == [
        (),
        (("older", "fn"), ("newer", "fn")),
        (),
        (("other", "fn"),),
    ]
    assert matcher.asked == []  # the index decided each
    for run_id in ("older", "newer", "other"):
        record = store.get_run(run_id)
        assert record is not None and record.status == "CANCELLED"
        assert record.error == {"name": "Cancelled", "message": f"cancelled by event {CANCEL}"}
        assert history_kinds(store, run_id).count("RUN_CANCELLED") == 1
    effects = {(r.event_id, r.effect, r.run.run_id) for r in store.event_runs(["c-1", "c-3"])}
    assert effects == {("c-1", CANCELLED, "older"), ("c-1", CANCELLED, "newer")} | {
        ("c-3", CANCELLED, "other")
    }


def test_an_event_cancels_the_runs_of_each_indexed_path_oldest_first(store: Store) -> None:
    made(store, cancellable("by-order", "o-1"), at=T0)
    made(store, cancellable("by-customer", "c-1", path="customer"), at=T0 - 1)
    [result] = ingest(store, cancel("c-1", {"orderId": "o-1", "customer": "c-1"}), now=T0 + 1)
    assert result.cancelled == (("by-customer", "fn"), ("by-order", "fn"))


def test_a_value_that_is_not_a_string_is_left_to_the_matcher(store: Store) -> None:
    """The matcher is found under the text "42", which an integer 42 has too; the index does
    not decide it (CEL's ``"42" == 42`` is false): the batch goes the general way, the matcher
    is asked, the run stays, and the batch's other event still cancels its own run."""
    made(store, cancellable("r42", "42"), cancellable("r1", "o-1"))
    matcher = CountingMatcher()
    number, text = ingest(
        store,
        cancel("c-1", {"orderId": 42}),
        cancel("c-2", {"orderId": "o-1"}),
        now=T0 + 1,
        matcher=matcher,
    )
    assert (number.cancelled, text.cancelled) == ((), (("r1", "fn"),))
    assert len(matcher.asked) == 1
    record = store.get_run("r42")
    assert record is not None and record.status == "QUEUED"


def test_a_run_ended_before_is_not_cancelled_and_a_duplicate_still_cancels(store: Store) -> None:
    made(store, cancellable("r1", "o-1"), cancellable("r2", "o-2"))
    [first] = ingest(store, cancel("c-1", {"orderId": "o-1"}, sender_id="s-1"), now=T0 + 1)
    assert first.cancelled == (("r1", "fn"),)
    again, other = ingest(
        store,
        cancel("c-2", {"orderId": "o-1"}, sender_id="s-1"),  # the same id: a duplicate
        cancel("c-3", {"orderId": "o-2"}, sender_id="s-1"),
        now=T0 + 2,
    )
    assert (again.duplicate, again.cancelled) == (True, ())
    assert (other.duplicate, other.cancelled) == (True, (("r2", "fn"),))
    assert history_kinds(store, "r1").count("RUN_CANCELLED") == 1


def test_a_cancelled_child_of_an_invoke_fails_its_parent_s_step(store: Store) -> None:
    start(store, "parent")
    held = lease_run(store, "parent")
    invoking = step("parent", "h-invoke", 0, "PENDING", kind="invoke")
    commit(store, PassCommit("parent", held.token, steps=[invoking], end=RunEnd("WAITING")))
    made(store, cancellable("child", "o-1", parent=("parent", "h-invoke")), cancellable("r", "o-2"))
    child, plain = ingest(
        store, cancel("c-1", {"orderId": "o-1"}), cancel("c-2", {"orderId": "o-2"}), now=T0 + 1
    )
    assert (child.cancelled, plain.cancelled) == ((("child", "fn"),), (("r", "fn"),))
    [invoked] = store.get_steps("parent")
    assert invoked.status == "FAILED"


def test_a_cancelling_batch_does_not_go_the_general_way(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    made(store, cancellable("r1", "o-1"), cancellable("r2", "o-2"))

    def general(*args: Any) -> None:
        raise AssertionError("the general way")

    monkeypatch.setattr(_ingest_rules, "_Batch", general)
    results = ingest(
        store, cancel("c-0", {"orderId": "o-0"}), cancel("c-1", {"orderId": "o-1"}), now=T0 + 1
    )
    assert [r.cancelled for r in results] == [(), (("r1", "fn"),)]


def test_a_quick_cancellation_comes_after_the_resolution_it_follows(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a waiting run's wait resolved by a sender, then the run cancelled by a cancel-only
    batch (``cancel_matched``, not the general way): the resolution's rows come first
    (WAIT_MATCHED before RUN_CANCELLED in the file)."""
    made(sqlite_store, cancellable("r1", "o-1"), cancellable("r2", "o-2"))
    pending = wait("r1", "w-r1", 'async.data.orderId == "p-1"')
    suspend_on_wait(sqlite_store, lease_run(sqlite_store, "r1"), pending)
    paid = EventIngest(event("p-1", "payment/received", {"orderId": "p-1"}))
    [resolved] = ingest(sqlite_store, paid, now=T0 + 1)
    assert resolved.resumed_run_ids == ("r1",)

    def general(*args: Any) -> None:
        raise AssertionError("the general way")

    monkeypatch.setattr(_ingest_rules, "_Batch", general)
    results = ingest(
        sqlite_store,
        cancel("c-1", {"orderId": "o-1"}),
        cancel("c-2", {"orderId": "o-2"}),
        now=T0 + 2,
    )
    assert [r.cancelled for r in results] == [(("r1", "fn"),), (("r2", "fn"),)]
    with closing(sqlite3.connect(sqlite_store.path)) as conn:
        query = "SELECT kind FROM history WHERE run_id = ? ORDER BY seq"
        written = [kind for (kind,) in conn.execute(query, ("r1",))]
    assert written[-2:] == ["WAIT_MATCHED", "RUN_CANCELLED"]
    [step] = sqlite_store.get_steps("r1")
    assert step.status == "COMPLETED"


def _scenario(store: Store, p: str) -> list[tuple[Any, ...]]:
    """Runs of several values and paths, made at several times, one cancelled before, one
    leased; then a batch with repeated values, misses, a duplicate and an event of two paths.
    Every id and value begins with ``p`` (so the scenario can be played twice on one store).
    What the batch did and what the runs became, ``p`` left out."""
    made(store, cancellable(f"{p}a1", f"{p}o-1"), cancellable(f"{p}b", f"{p}o-2"), at=T0)
    late = cancellable(f"{p}c", f"{p}k-1", path="customer")
    made(store, cancellable(f"{p}a0", f"{p}o-1"), late, at=T0 - 3)
    made(store, cancellable(f"{p}d", f"{p}o-3"), cancellable(f"{p}e", f"{p}o-4"), at=T0 + 0.5)
    lease_run(store, f"{p}e", now=T0 + 0.5)
    ingest(store, cancel(f"{p}c-0", {"orderId": f"{p}o-3"}), now=T0 + 0.6)  # d: ended before
    results = ingest(
        store,
        cancel(f"{p}c-1", {"orderId": f"{p}o-2", "customer": f"{p}k-1"}, sender_id=f"{p}s"),
        cancel(f"{p}c-2", {"orderId": f"{p}o-1"}),
        cancel(f"{p}c-3", {"orderId": f"{p}o-9"}),
        cancel(f"{p}c-4", {"orderId": f"{p}o-1"}, sender_id=f"{p}s"),
        cancel(f"{p}c-5", {"orderId": f"{p}o-3"}),
        cancel(f"{p}c-6", {"customer": f"{p}k-1", "orderId": f"{p}o-4"}),
        now=T0 + 1,
    )
    outcome: list[tuple[Any, ...]] = [
        (r.internal_id, r.duplicate, r.run_ids, r.resumed_run_ids, r.skipped, r.cancelled)
        for r in results
    ]
    for run_id in ("a0", "a1", "b", "c", "d", "e"):
        record = store.get_run(p + run_id)
        assert record is not None
        history = [(h.kind, h.ts, h.data) for h in store.get_history(p + run_id)]
        outcome.append((run_id, record.status, record.ended_at, record.error, history))
    events = [f"{p}c-{i}" for i in range(7)]
    outcome += sorted((r.event_id, r.effect, r.run.run_id) for r in store.event_runs(events))
    return [_without(p, row) for row in outcome]


def _without(p: str, value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(p, "")
    if isinstance(value, tuple | list):
        return type(value)(_without(p, v) for v in value)
    return value


def test_the_outcome_is_the_general_way_s(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scenario twice on one store: the batch through ``cancelling_only``, then (other
    ids and values) the general way."""
    quick = _scenario(store, "q-")
    with monkeypatch.context() as patched:
        _general_way(patched)
        general = _scenario(store, "g-")
    assert quick == general
    assert ("b", "fn") in [pair for row in quick[:6] for pair in row[5]]  # it cancelled runs
