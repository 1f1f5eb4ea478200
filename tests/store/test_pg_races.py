"""Two read-then-write decisions of issue 8 ("Correct under concurrent writers") raced by two
PostgreSQL sessions, each order forced: the first holds its transaction open until the second's
statement is seen waiting for a lock the first holds (``pg_stat_activity``), then commits. One
side decides, whichever goes first (docs/design.md, "Exact decisions with concurrent writers"):

- a cancellation and a pass's commit of one run: both lock the run's queue row first (*Fencing,
  cancel vs commit*): a commit after the cancel ends nothing, a cancel after the run's last
  commit cancels nothing;
- an event resolving a wait and the wait's timeout: whoever deletes the wait row decides
  (*Waits*): the step has the event's payload or the timeout's null, never both.

The contract suite makes these calls one after the other; here the second is in flight while
the first has not committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

import pgtest
from stepline.serde import loads
from stepline.store.interface import StoreTx
from stepline.store.postgres import PostgresStore
from stepline.store.records import EventIngest, PassCommit, RunEnd

from .builders import T0, cel_matches, commit, event, history_kinds, lease_run, start, step
from .test_waits import ORDER_O1, expire, pay, wait_step, waiting

Result = TypeVar("Result")


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    first, second = PostgresStore(pg_url), PostgresStore(pg_url)
    first.migrate()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def raced(
    first: PostgresStore, decide: Callable[[StoreTx], Any], then: Callable[[], Result]
) -> tuple[Any, Result]:
    """``decide`` in a transaction of ``first``, held open until ``then`` (another session)
    waits for one of its locks, then committed; what each returned."""
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            outcome["result"] = then()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=second, daemon=True)
    with first.transaction() as tx:
        decided = decide(tx)
        thread.start()
        deadline = time.monotonic() + 30
        while pgtest.lock_waiters(first.url) == 0:  # a poll of the server, under the deadline
            assert thread.is_alive(), f"the second did not wait for the first: {outcome}"
            assert time.monotonic() < deadline, "the second never waited for a lock"
            time.sleep(0.005)  # real time: the other session's progress on the server
    thread.join(30)
    assert not thread.is_alive(), "the second still waits after the first committed"
    if "error" in outcome:
        raise outcome["error"]
    return decided, outcome["result"]


def _leased(store: PostgresStore) -> str:
    """Run r1 started and leased: its lease's token."""
    start(store, "r1")
    return lease_run(store, "r1").token


def _finishing(run_id: str, token: str) -> PassCommit:
    """The run's last pass: a step and the run's end."""
    return PassCommit(
        run_id,
        token,
        steps=[step(run_id, "h1", 0, output="done")],
        end=RunEnd("COMPLETED", output_json=b'"done"'),
    )


def test_a_commit_waiting_for_a_cancellation_ends_nothing(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two
    token = _leased(first)
    cancelled, committed = raced(
        first,
        lambda tx: tx.cancel_run("r1", T0 + 1, "by the test"),
        lambda: commit(second, _finishing("r1", token), T0 + 2),
    )
    assert cancelled == "fn"
    run = first.get_run("r1")
    assert run is not None
    assert (run.status, run.output_json) == ("CANCELLED", None)
    kinds = history_kinds(first, "r1")
    assert "RUN_CANCELLED" in kinds and "RUN_COMPLETED" not in kinds, kinds
    assert committed is None  # "the pass must stop": only its settled step is kept
    assert [(s.step_id, s.status) for s in first.get_steps("r1")] == [("step-h1", "COMPLETED")]


def test_a_cancellation_waiting_for_the_runs_last_commit_cancels_nothing(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two
    token = _leased(first)

    def cancel() -> str | None:
        with second.transaction() as tx:
            return tx.cancel_run("r1", T0 + 2, "by the test")

    _, cancelled = raced(
        first, lambda tx: tx.commit_pass(_finishing("r1", token), T0 + 1, _no_waits), cancel
    )
    assert cancelled is None
    run = first.get_run("r1")
    assert run is not None
    assert (run.status, loads(run.output_json or b"null")) == ("COMPLETED", "done")
    assert "RUN_CANCELLED" not in history_kinds(first, "r1")


def _no_waits(*_: Any) -> bool:
    return False


def _payment() -> EventIngest:
    return EventIngest(event("pay-1", "payment/received", {"orderId": "o-1"}))


def test_a_timeout_waiting_for_the_event_that_resolved_the_wait_times_out_nothing(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two
    waiting(first, "r1", ORDER_O1, expires_at=T0 + 60)
    held = lease_run(first, "r1", now=T0 + 61)  # its timeout is due: its pass expires it
    [resolved], timed_out = raced(
        first,
        lambda tx: tx.ingest([_payment()], T0 + 59, cel_matches),
        lambda: expire(second, "r1", held.token, T0 + 61),
    )
    assert resolved.resumed_run_ids == ("r1",)
    assert timed_out == []
    settled, waits = wait_step(first)
    assert (settled.status, waits) == ("COMPLETED", [])
    assert loads(settled.output_json)["id"] == "pay-1"
    kinds = history_kinds(first, "r1")
    assert "WAIT_MATCHED" in kinds and "WAIT_TIMED_OUT" not in kinds, kinds


def test_an_event_waiting_for_the_timeout_of_the_wait_it_matches_resolves_nothing(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two
    waiting(first, "r1", ORDER_O1, expires_at=T0 + 60)
    held = lease_run(first, "r1", now=T0 + 61)
    timed_out, resolved = raced(
        first,
        lambda tx: tx.expire_waits("r1", held.token, T0 + 61),
        lambda: pay(second, "pay-1", T0 + 59, orderId="o-1"),
    )
    assert timed_out == ["h-wait"]
    assert resolved.resumed_run_ids == ()
    settled, waits = wait_step(first)
    assert (settled.status, settled.output_json, waits) == ("COMPLETED", b"null", [])
    kinds = history_kinds(first, "r1")
    assert "WAIT_TIMED_OUT" in kinds and "WAIT_MATCHED" not in kinds, kinds
