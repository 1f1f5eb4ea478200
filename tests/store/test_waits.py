"""wait_for_event storage: matching by index and expression, timeouts (expire_waits)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stepline.errors import LeaseLostError
from stepline.expressions import forget_matchers, prepare_match
from stepline.serde import loads
from stepline.store import Store
from stepline.store.records import (
    Admission,
    EventIngest,
    IngestResult,
    MatcherSpec,
    NewRun,
    PassCommit,
    RunEnd,
)

from .builders import (
    T0,
    CountingMatcher,
    cel_matches,
    commit,
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

ORDER_O1 = 'async.data.orderId == "o-1"'


def waiting(
    store: Store, run_id: str, expression: str | None, *, expires_at: float | None = None
) -> None:
    """Start ``run_id`` and suspend it on a wait (step hash "h-wait", wait id "w-<run_id>")."""
    start(store, run_id)
    pending = wait(run_id, f"w-{run_id}", expression, expires_at=expires_at)
    suspend_on_wait(store, lease_run(store, run_id), pending, until=expires_at)


def pay(
    store: Store, internal_id: str, now: float, matcher: Any = cel_matches, **data: Any
) -> IngestResult:
    [result] = ingest(
        store, EventIngest(event(internal_id, "payment/received", data)), now=now, matcher=matcher
    )
    return result


def wait_step(store: Store, run_id: str = "r1") -> Any:
    state = store.load_run(run_id)
    assert state is not None
    return state.steps["h-wait"], state.waits


def test_an_indexed_wait_is_resolved_by_a_matching_event(store: Store) -> None:
    waiting(store, "r1", ORDER_O1)
    assert wait_step(store)[1][0].index_path == "data.orderId"
    assert store.next_due_at() is None

    result = pay(store, "pay-1", T0 + 10, orderId="o-1", amount=5)
    assert result.resumed_run_ids == ("r1",)
    settled, waits = wait_step(store)
    assert waits == []
    assert settled.status == "COMPLETED"
    assert settled.ended_at == T0 + 10
    [stored_event] = store.get_events(["pay-1"])
    assert loads(settled.output_json) == stored_event.payload()
    last = store.get_history("r1")[-1]
    assert (last.kind, last.ts, last.step_id) == ("WAIT_MATCHED", T0 + 10, "step-h-wait")
    assert last.data == {"event_id": "pay-1"}
    assert store.next_due_at() == T0 + 10
    assert [held.run_id for held in lease(store, "w1", now=T0 + 10)] == ["r1"]
    # The wait is gone: a second matching event resumes nothing.
    assert pay(store, "pay-2", T0 + 11, orderId="o-1").resumed_run_ids == ()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("payment/received", {"orderId": "o-2"}),
        ("payment/received", {"orderId": 1}),
        ("payment/received", {"other": "o-1"}),
        ("payment/refunded", {"orderId": "o-1"}),
    ],
)
def test_an_event_that_does_not_match_leaves_the_wait(
    store: Store, name: str, data: dict[str, Any]
) -> None:
    waiting(store, "r1", ORDER_O1)
    [result] = ingest(store, EventIngest(event("e", name, data)), now=T0 + 10)
    assert result.resumed_run_ids == ()
    settled, waits = wait_step(store)
    assert settled.status == "PENDING"
    assert [w.wait_id for w in waits] == ["w-r1"]
    assert store.next_due_at() is None
    assert pay(store, "pay", T0 + 11, orderId="o-1").resumed_run_ids == ("r1",)


def test_the_whole_expression_must_match_not_only_the_index(store: Store) -> None:
    waiting(store, "r1", 'async.data.orderId == "o-1" && async.data.amount > 100')
    assert pay(store, "small", T0 + 1, orderId="o-1", amount=5).resumed_run_ids == ()
    assert pay(store, "big", T0 + 2, orderId="o-1", amount=500).resumed_run_ids == ("r1",)


def test_unindexed_waits_are_candidates_for_every_event_of_the_name(store: Store) -> None:
    waiting(store, "r1", "async.data.amount > 100")
    waiting(store, "r2", None)
    assert [w.index_path for w in wait_step(store, "r1")[1]] == [None]

    matcher = CountingMatcher()
    assert pay(store, "a", T0 + 1, matcher, amount=1).resumed_run_ids == ("r2",)
    assert sorted(matcher.asked) == ["w-r1", "w-r2"]
    assert pay(store, "b", T0 + 2, matcher, amount=101).resumed_run_ids == ("r1",)


def test_one_event_resolves_every_wait_it_matches(store: Store) -> None:
    waiting(store, "r1", ORDER_O1)
    waiting(store, "r2", ORDER_O1)
    waiting(store, "r3", 'async.data.orderId == "o-2"')
    result = pay(store, "pay", T0 + 1, orderId="o-1")
    assert sorted(result.resumed_run_ids) == ["r1", "r2"]
    assert wait_step(store, "r3")[0].status == "PENDING"


def test_the_matcher_is_asked_only_about_candidates(store: Store) -> None:
    count = 1000
    run_ids = [f"r{n:04}" for n in range(count)]
    start(store, *run_ids)
    leases = lease(store, "w1", limit=count)
    assert len(leases) == count
    with store.transaction() as tx:
        for held in leases:
            n = int(held.run_id[1:])
            w = wait(held.run_id, f"w-{n}", f"async.data.orderId == {n}")  # asks the matcher
            tx.commit_pass(
                PassCommit(
                    held.run_id,
                    held.token,
                    steps=[step(held.run_id, "h-wait", 0, "PENDING", kind="wait")],
                    waits=[w],
                    end=RunEnd("WAITING"),
                ),
                T0,
                cel_matches,
            )

    matcher = CountingMatcher()
    assert pay(store, "pay", T0 + 1, matcher, orderId=500).resumed_run_ids == ("r0500",)
    assert matcher.asked == ["w-500"]
    assert pay(store, "none", T0 + 2, matcher, orderId=-1).resumed_run_ids == ()
    assert pay(store, "bare", T0 + 3, matcher, amount=1).resumed_run_ids == ()
    assert matcher.asked == ["w-500"]


def test_the_index_decides_a_wait_on_one_string_equality(store: Store) -> None:
    """A candidate found under the event's string value, whose expression is exactly that
    equality, is resolved without asking the matcher: the lookup compared the two strings."""
    waiting(store, "r1", ORDER_O1)
    waiting(store, "r2", 'async.data.orderId == "o-1" && async.data.amount > 1')
    matcher = CountingMatcher()
    result = pay(store, "pay", T0 + 1, matcher, orderId="o-1", amount=5)
    assert sorted(result.resumed_run_ids) == ["r1", "r2"]
    assert matcher.asked == ["w-r2"]


def test_the_index_decides_a_wait_as_prepare_match_stored_it_with_the_matcher_cache_empty(
    store: Store,
) -> None:
    # issue 6 (matching costs): a process that did not store the wait (or restarted since)
    # decided nothing by the index before: each candidate was parsed (``load_match``, ~7 us)
    # and asked. The text prepare_match stores for one string equality decides it as it is.
    for run_id, order in (("r1", "o-1"), ("r2", 'o "2"')):
        own = {"data": {"orderId": order}}
        waiting(store, run_id, prepare_match("event.data.orderId == async.data.orderId", own).text)
    forget_matchers()
    matcher = CountingMatcher()
    assert pay(store, "none", T0 + 1, matcher, orderId="o-3").resumed_run_ids == ()
    assert pay(store, "pay", T0 + 2, matcher, orderId="o-1").resumed_run_ids == ("r1",)
    assert pay(store, "pay-2", T0 + 3, matcher, orderId='o "2"').resumed_run_ids == ("r2",)
    assert matcher.asked == []


@pytest.mark.parametrize(
    ("stored", "path", "key", "field", "value", "stray"),
    [
        ("async.data.items.0 == dyn(5)", "data.items.0", "5", "items", [5], [5.5]),
        ('async.data.order-id == dyn("5")', "data.order-id", "5", "order-id", "5", 5),
    ],
    ids=["list-index", "dash"],
)
def test_a_wait_text_stored_dotted_by_earlier_versions_is_matched_by_a_cold_process(
    store: Store, stored: str, path: str, key: str, field: str, value: Any, stray: Any
) -> None:
    # review F1: versions since 58cd524 stored a wait over a list index or a key that is no
    # identifier as this dotted text, with its index key; a process without it cached parsed it
    # for any event the index did not decide, and the parse raised out of the ingest
    start(store, "r1")
    pending = replace(wait("r1", "w-r1", None), expression=stored, index_path=path, index_value=key)
    suspend_on_wait(store, lease_run(store, "r1"), pending)
    forget_matchers()
    assert pay(store, "stray", T0 + 1, **{field: stray}).resumed_run_ids == ()
    forget_matchers()
    assert pay(store, "pay", T0 + 2, **{field: value}).resumed_run_ids == ("r1",)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ('async.data.orderId == "5"', 5),  # the same key ("5"), not equal in CEL
        ('async.data.orderId == "5"', 5.0),
        ("async.data.orderId == 5", "5"),
        ('async.data.orderId == "[1]"', [1]),
        ('async.data.orderId == "true"', True),
    ],
)
def test_a_value_of_another_type_under_the_same_key_does_not_resolve_a_wait(
    store: Store, expression: str, value: Any
) -> None:
    waiting(store, "r1", expression)
    [pending] = wait_step(store)[1]
    assert pay(store, "other", T0 + 1, orderId=value).resumed_run_ids == ()
    assert [w.wait_id for w in wait_step(store)[1]] == [pending.wait_id]


def test_an_event_ingested_before_the_wait_never_resolves_it(store: Store) -> None:
    start(store, "r1")
    held = lease_run(store, "r1")
    assert pay(store, "early", T0 + 1, orderId="o-1").resumed_run_ids == ()
    suspend_on_wait(store, held, wait("r1", "w-r1", ORDER_O1, created_at=T0 + 2), T0 + 2)

    settled, waits = wait_step(store)
    assert settled.status == "PENDING"
    assert len(waits) == 1
    assert store.next_due_at() is None
    assert "WAIT_MATCHED" not in history_kinds(store, "r1")
    assert pay(store, "late", T0 + 3, orderId="o-1").resumed_run_ids == ("r1",)
    assert loads(wait_step(store)[0].output_json)["id"] == "late"


def test_an_event_sent_by_a_pass_resolves_waits_of_other_runs(store: Store) -> None:
    waiting(store, "r1", ORDER_O1)
    start(store, "sender")
    held = lease_run(store, "sender")
    sent = EventIngest(
        event("sent", "payment/received", {"orderId": "o-1"}),
        (NewRun("r-new", "fn-pay", ("sent",)),),
    )
    commit(store, PassCommit("sender", held.token, events=[sent]), T0 + 4)
    assert wait_step(store)[0].status == "COMPLETED"
    assert store.get_run("r-new") is not None
    assert sorted(h.run_id for h in lease(store, "w2", now=T0 + 4)) == ["r-new", "r1"]


# -- expire_waits ---------------------------------------------------------------------------------


def expire(store: Store, run_id: str, token: str, now: float) -> list[str]:
    with store.transaction() as tx:
        return tx.expire_waits(run_id, token, now)


def test_an_expired_wait_times_out_with_a_null_result(store: Store) -> None:
    waiting(store, "r1", ORDER_O1, expires_at=T0 + 60)
    assert store.next_due_at() == T0 + 60
    held = lease_run(store, "r1", now=T0 + 60)

    assert expire(store, "r1", held.token, T0 + 60) == ["h-wait"]
    settled, waits = wait_step(store)
    assert waits == []
    assert (settled.status, settled.output_json, settled.ended_at) == (
        "COMPLETED",
        b"null",
        T0 + 60,
    )
    last = store.get_history("r1")[-1]
    assert (last.kind, last.ts, last.step_id) == ("WAIT_TIMED_OUT", T0 + 60, "step-h-wait")
    assert pay(store, "late", T0 + 61, orderId="o-1").resumed_run_ids == ()
    assert expire(store, "r1", held.token, T0 + 62) == []


def test_only_waits_past_their_deadline_time_out(store: Store) -> None:
    start(store, "r1")
    held = lease_run(store, "r1")
    timed = wait("r1", "w-timed", ORDER_O1, expires_at=T0 + 60)
    forever = wait("r1", "w-forever", ORDER_O1, step_hash="h-forever")
    commit(
        store,
        PassCommit(
            "r1",
            held.token,
            steps=[step("r1", "h-wait", 0, "PENDING"), step("r1", "h-forever", 1, "PENDING")],
            waits=[timed, forever],
            end=RunEnd("SLEEPING", due_at=T0 + 30),
        ),
    )
    early = lease_run(store, "r1", now=T0 + 30)
    assert expire(store, "r1", early.token, T0 + 59.999) == []
    assert len(wait_step(store)[1]) == 2

    late = lease_run(store, "r1", "w2", now=T0 + 60)  # the first lease expired at T0 + 60
    assert expire(store, "r1", late.token, T0 + 60) == ["h-wait"]
    assert expire(store, "r1", late.token, T0 + 10**9) == []
    settled, waits = wait_step(store)
    assert settled.status == "COMPLETED"
    assert [w.wait_id for w in waits] == ["w-forever"]
    assert store.get_steps("r1")[1].status == "PENDING"


def test_expire_waits_is_fenced_by_the_token(store: Store) -> None:
    waiting(store, "r1", ORDER_O1, expires_at=T0 + 60)
    lease_run(store, "r1", now=T0 + 60)
    with pytest.raises(LeaseLostError):
        expire(store, "r1", "stale-token", T0 + 61)
    settled, waits = wait_step(store)
    assert settled.status == "PENDING"
    assert len(waits) == 1
    assert "WAIT_TIMED_OUT" not in history_kinds(store, "r1")


def test_a_wait_resolved_by_an_event_is_not_timed_out(store: Store) -> None:
    waiting(store, "r1", ORDER_O1, expires_at=T0 + 60)
    assert pay(store, "pay", T0 + 59, orderId="o-1").resumed_run_ids == ("r1",)
    held = lease_run(store, "r1", now=T0 + 61)
    assert expire(store, "r1", held.token, T0 + 61) == []
    settled, _ = wait_step(store)
    assert loads(settled.output_json)["id"] == "pay"
    assert "WAIT_TIMED_OUT" not in history_kinds(store, "r1")


def _pending_nowhere(store: Store, run_id: str, event_id: str) -> None:
    """``run_id``'s wait, resolved by ``event_id``, is pending for no read and no claim."""
    settled, waits = wait_step(store, run_id)
    assert (settled.status, waits) == ("COMPLETED", [])
    assert loads(settled.output_json)["id"] == event_id
    [state] = store.queue_states([run_id], T0 + 70)
    assert state.waits == ()
    assert history_kinds(store, run_id).count("WAIT_MATCHED") == 1


def test_a_resolved_wait_is_pending_nowhere_before_or_after_its_row_is_purged(
    store: Store,
) -> None:
    # issue 6 (matching costs): the SQLite store keeps a resolved wait's row, marked resolved,
    # and deletes such rows later in batches (purge_resolved_waits); until then, and after,
    # no read shows it pending, no event resolves it again and no timeout claims it
    waiting(store, "r1", ORDER_O1, expires_at=T0 + 60)
    waiting(store, "r2", None, expires_at=T0 + 60)
    assert sorted(pay(store, "pay-1", T0 + 10, orderId="o-1").resumed_run_ids) == ["r1", "r2"]
    for purged in (False, True):
        for run_id in ("r1", "r2"):
            _pending_nowhere(store, run_id, "pay-1")
        again = pay(store, f"pay-again-{purged}", T0 + 20, orderId="o-1")
        assert again.resumed_run_ids == ()
        if not purged:
            with store.transaction() as tx:
                count = tx.purge_resolved_waits(1)  # one at a time: a batch's limit holds
                assert count in (0, 1)  # 0: a store that deletes a wait as it resolves it
                assert tx.purge_resolved_waits(10) == (1 if count else 0)
                assert tx.purge_resolved_waits(10) == 0
    held = lease_run(store, "r1", now=T0 + 61)
    assert expire(store, "r1", held.token, T0 + 61) == []
    _pending_nowhere(store, "r1", "pay-1")
    assert "WAIT_TIMED_OUT" not in history_kinds(store, "r1")


def test_a_wait_resolved_then_its_run_cancelled_in_one_ingest_keeps_both_in_order(
    store: Store,
) -> None:
    # issue 6 "What it must show" (matching costs): the SQLite store writes the effects of the
    # waits an ingest resolves together; a cancellation later in the same batch must still
    # come after them (history order, step result kept, run cancelled)
    cancel_on = (MatcherSpec("order/cancelled", None, None, None, None),)
    run = NewRun("r1", "fn", ("ev-r1",), admission=Admission(cancel_on=cancel_on))
    ingest(store, EventIngest(event("ev-r1"), (run,)))
    suspend_on_wait(store, lease_run(store, "r1"), wait("r1", "w-r1", ORDER_O1))

    paid, cancelled = ingest(
        store,
        EventIngest(event("pay-1", "payment/received", {"orderId": "o-1"})),
        EventIngest(event("cancel-1", "order/cancelled")),
        now=T0 + 5,
    )
    assert paid.resumed_run_ids == ("r1",)
    assert cancelled.cancelled == (("r1", "fn"),)
    assert history_kinds(store, "r1")[-2:] == ["WAIT_MATCHED", "RUN_CANCELLED"]
    settled, waits = wait_step(store)
    assert (settled.status, waits) == ("COMPLETED", [])
    record = store.get_run("r1")
    assert record is not None and record.status == "CANCELLED"
    assert lease(store, "w1", now=T0 + 5) == []


# -- a wait whose step is no longer PENDING (stale) -----------------------------------------------


def _completed_under_a_stale_wait(
    store: Store, expires_at: float | None, expression: str = ORDER_O1
) -> None:
    """``r1``'s step "h-wait" COMPLETED with its output ``{"kept": 1}`` at T0, and a wait row
    of that step stored beside it (a stale wait: one a ``db copy`` of a resolved wait's kept row
    would make, or a pass that completed the step its wait was for), the run due at T0 + 60."""
    start(store, "r1")
    held = lease_run(store, "r1")
    commit(
        store,
        PassCommit(
            "r1",
            held.token,
            steps=[step("r1", "h-wait", 0, "COMPLETED", {"kept": 1}, kind="wait")],
            waits=[wait("r1", "w-r1", expression, expires_at=expires_at)],
            end=RunEnd("SLEEPING", due_at=T0 + 60),
        ),
    )


def _kept(store: Store) -> None:
    [kept] = store.get_steps("r1")
    assert (kept.status, loads(kept.output_json), kept.ended_at) == ("COMPLETED", {"kept": 1}, None)


def test_an_event_matching_a_stale_wait_keeps_its_completed_steps_output(store: Store) -> None:
    # review of issue 8: PostgreSQL's COMPLETE_STEP had no ``status = 'PENDING'`` guard (SQLite's
    # has, the memory store's had none either): an event matching a wait row whose step had
    # completed overwrote the step's output with the event
    _completed_under_a_stale_wait(store, None)
    pay(store, "pay", T0 + 10, orderId="o-1")
    _kept(store)


def test_a_stale_wait_timing_out_keeps_its_completed_steps_output(store: Store) -> None:
    # the same for its timeout (expire_waits): the step's output is not replaced by null
    _completed_under_a_stale_wait(store, T0 + 30)
    held = lease_run(store, "r1", now=T0 + 60)
    expire(store, "r1", held.token, T0 + 60)
    _kept(store)


# a stale wait is no wait: the run moved on (SQLite's schema 28 reads a wait as pending only
# while its step is PENDING); the memory and PostgreSQL stores claimed it (the run woken,
# WAIT_MATCHED / WAIT_TIMED_OUT logged, its hash returned by expire_waits)
STALE_EXPRESSIONS = [ORDER_O1, "async.data.amount > 0"]  # decided by the index, by the matcher


@pytest.mark.parametrize("expression", STALE_EXPRESSIONS, ids=["indexed", "unindexed"])
def test_an_event_matching_a_stale_wait_resumes_nothing(store: Store, expression: str) -> None:
    _completed_under_a_stale_wait(store, None, expression)
    result = pay(store, "pay", T0 + 10, orderId="o-1", amount=5)
    assert result.resumed_run_ids == ()
    assert "WAIT_MATCHED" not in history_kinds(store, "r1")
    assert lease(store, "w2", now=T0 + 10) == []  # not woken: still due at T0 + 60
    assert wait_step(store)[1] == []  # nor is it a wait of the run's
    _kept(store)
    # a wait of another run the same event would resolve still is
    waiting(store, "r2", expression)
    assert pay(store, "pay-2", T0 + 20, orderId="o-1", amount=5).resumed_run_ids == ("r2",)


def test_a_stale_wait_past_its_timeout_times_nothing_out(store: Store) -> None:
    _completed_under_a_stale_wait(store, T0 + 30)
    held = lease_run(store, "r1", now=T0 + 60)
    assert expire(store, "r1", held.token, T0 + 60) == []
    assert "WAIT_TIMED_OUT" not in history_kinds(store, "r1")
    assert wait_step(store)[1] == []
    _kept(store)


def test_a_stale_wait_is_not_read_as_a_wait_of_its_run(store: Store) -> None:
    # the read side as the write side (cbea632b): memory and PostgreSQL listed a stale wait's
    # row in ``load_run().waits``, in the state a lease loads and in ``queue_states`` (the
    # dashboard's "waiting on", ``stepline runs``); SQLite reads only pending waits
    _completed_under_a_stale_wait(store, T0 + 30)
    waiting(store, "r2", ORDER_O1)  # a pending wait beside it is read
    assert wait_step(store)[1] == []
    assert [w.wait_id for w in wait_step(store, "r2")[1]] == ["w-r2"]
    states = {s.run_id: s for s in store.queue_states(["r1", "r2"], T0 + 10)}
    assert (states["r1"].waits, [w.wait_id for w in states["r2"].waits]) == ((), ["w-r2"])
    held = lease_run(store, "r1", now=T0 + 60)
    loaded = store.load_run("r1") if held.loaded is None else held.loaded()
    assert loaded is not None and loaded.waits == []
    _kept(store)
