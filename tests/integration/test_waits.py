"""wait_for_event and invoke: matched, timed out, earlier events ignored, child results/failures."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from _polling import until

import sqlitetest
from stepline import (
    App,
    Context,
    Event,
    NonRetriableError,
    StepError,
    SyncContext,
    TriggerEvent,
)
from stepline.engine._housekeeping import WAIT_PURGE_EVERY
from stepline.expressions import forget_matchers
from stepline.store.sqlite._wait_queries import PENDING
from stepline.testing import MockClock, TestEngine


async def _step_ids(t: TestEngine, run_id: str, count: int) -> bool:
    run = await t.app.get_run(run_id)
    return run is not None and len(run.steps) == count


def _register_waiter(app: App) -> None:
    @app.function(id="checkout", trigger=TriggerEvent("order/created"))
    async def checkout(ctx: Context) -> Any:
        paid = await ctx.step.wait_for_event(
            "payment",
            event="payment/received",
            if_="async.data.orderId == event.data.orderId",
            timeout="1d",
        )
        if paid is None:
            return {"paid": False}
        return {"paid": True, "amount": paid.data["amount"]}


async def test_wait_for_event_is_resumed_by_a_matching_event(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    _register_waiter(app)
    async with make_engine(clock=MockClock(autojump=False)) as t:
        [event_id] = await t.send(Event("order/created", {"orderId": "o1"}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "WAITING")
        await t.send(Event("payment/received", {"orderId": "other", "amount": 1}))
        await t.send(Event("payment/received", {"orderId": "o1", "amount": 99}))
        done = await t.wait_for_run(run.run_id)
        history = [h.kind for h in await t.history(run.run_id)]
    assert done.output == {"paid": True, "amount": 99}
    assert "WAIT_MATCHED" in history


async def test_wait_for_event_times_out_with_none(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    _register_waiter(app)
    async with make_engine() as t:
        run = await t.trigger(Event("order/created", {"orderId": "o2"}))
        history = [h.kind for h in await t.history(run.run_id)]
    assert run.output == {"paid": False}
    assert "WAIT_TIMED_OUT" in history


async def test_an_event_sent_before_the_wait_does_not_match(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    _register_waiter(app)
    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send(Event("payment/received", {"orderId": "o3", "amount": 5}))
        [event_id] = await t.send(Event("order/created", {"orderId": "o3"}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "WAITING")
        clock.advance(86400 + 1)
        t.worker.wake()  # type: ignore[union-attr]
        done = await t.wait_for_run(run.run_id)
    assert done.output == {"paid": False}


@pytest.mark.parametrize(
    ("if_", "own", "stray", "paid"),
    [
        # a list index: the stray event's value is a number the index does not decide
        (
            "async.data.items[0] == event.data.items[0]",
            {"items": [5]},
            {"items": [6]},
            {"items": [5]},
        ),
        # a key that is no identifier: the NUMBER 5 is found under the string's index key ("5")
        (
            'async.data["order-id"] == event.data["order-id"]',
            {"order-id": "5"},
            {"order-id": 5},
            {"order-id": "5"},
        ),
        (
            "async.data.items[0].id == event.data.items[0].id",
            {"items": [{"id": 3}]},
            {"items": [{"id": 4}]},
            {"items": [{"id": 3}]},
        ),
    ],
)
async def test_a_wait_on_an_index_or_a_bracketed_key_matches_in_a_process_that_did_not_prepare_it(
    app: App,
    make_engine: Callable[..., TestEngine],
    if_: str,
    own: dict[str, Any],
    stray: dict[str, Any],
    paid: dict[str, Any],
) -> None:
    """The wait's stored text is read by a process whose matcher cache does not hold it (another
    sender, a restarted worker, past the cache's bound): it must be an expression that process
    can load. It was ``async.data.items.0 == dyn(5)`` (review F1), which does not parse: the send
    of any event of that name the index did not decide raised ``ExpressionError``."""

    @app.function(id="checkout", trigger=TriggerEvent("order/created"))
    async def checkout(ctx: Context) -> Any:
        got = await ctx.step.wait_for_event(
            "payment", event="payment/received", if_=if_, timeout="1d"
        )
        return None if got is None else got.data["amount"]

    async with make_engine(clock=MockClock(autojump=False)) as t:
        [event_id] = await t.send(Event("order/created", own))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "WAITING")
        forget_matchers()  # as in a process that has just started
        await t.send(Event("payment/received", {**stray, "amount": 1}))  # does not match
        await t.send(Event("payment/received", {**paid, "amount": 7}))
        assert (await t.wait_for_run(run.run_id)).output == 7


async def test_match_shorthand_and_unfiltered_waits(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="approval", trigger=TriggerEvent("doc/submitted"))
    async def approval(ctx: Context) -> Any:
        approved = await ctx.step.wait_for_event(
            "approved", event="doc/approved", match="data.docId", timeout="1h"
        )
        anything = await ctx.step.wait_for_event("any", event="doc/archived", timeout="1h")
        return [approved.data if approved else None, anything.name if anything else None]

    async with make_engine(clock=MockClock(autojump=False)) as t:
        [event_id] = await t.send(Event("doc/submitted", {"docId": 7}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "WAITING")
        await t.send(Event("doc/approved", {"docId": 8}))
        await t.send(Event("doc/approved", {"docId": 7, "by": "ann"}))
        await until("the second wait to be stored", lambda: _step_ids(t, run.run_id, 2))
        await t.send(Event("doc/archived"))
        done = await t.wait_for_run(run.run_id)
    assert done.output == [{"docId": 7, "by": "ann"}, "doc/archived"]


async def test_a_wait_resolved_while_its_suspended_pass_unwinds_resumes_the_run(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # wakeups: the suspend commit releases the run's lease, but its pass stays in the worker's
    # active set until the function has unwound. An event that resolved the wait in that window
    # made the run due; the worker leased it again, refused to start a second pass of a run
    # still active and dropped that lease: the run stayed leased with no pass until the lease
    # expired (forever on a still clock). Seen as a rare hang of
    # test_match_shorthand_and_unfiltered_waits under load; a slow cleanup makes it certain.
    unwinding = threading.Event()  # the function's finally: block has begun
    release = threading.Event()

    @app.function(id="slow-cleanup", trigger=TriggerEvent("doc/submitted"))
    def slow_cleanup(ctx: SyncContext) -> Any:
        try:
            approved = ctx.step.wait_for_event(
                "approved", event="doc/approved", match="data.docId", timeout="1h"
            )
        finally:
            if not release.is_set():
                unwinding.set()
                release.wait(30)  # real time: bounds the test if it is never released
        return approved.data if approved else None

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("doc/submitted", {"docId": 7}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "WAITING")
        await until("the suspended pass to be unwinding", unwinding.is_set)
        await t.send(Event("doc/approved", {"docId": 7}))
        await t.tick()  # the worker looked for due work while the old pass is still active
        release.set()
        done = await t.wait_for_run(run.run_id, timeout=10)
    assert done.output == {"docId": 7}


async def test_invoke_returns_the_child_result(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="report")
    async def report(ctx: Context) -> Any:
        await ctx.step.sleep("render", "10m")
        return {"report_for": ctx.event.data["userId"]}

    @app.function(id="parent", trigger=TriggerEvent("go"))
    async def parent(ctx: Context) -> Any:
        result = await ctx.step.invoke("generate-report", function=report, data={"userId": 5})
        return await ctx.step.run("process-report", lambda: result["report_for"] * 2)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        [child] = await t.runs(function_id="report")
    assert run.output == 10
    assert child.status == "COMPLETED"
    assert [s.id for s in run.steps] == ["generate-report", "process-report"]


async def test_invoke_failure_raises_step_error(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="broken", retries=0)
    async def broken(ctx: Context) -> Any:
        raise NonRetriableError("child exploded")

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        try:
            await ctx.step.invoke("call", function="broken")
        except StepError as error:
            return {"caught": error.error_message}
        return "unreachable"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == {"caught": "child exploded"}


async def test_invoke_of_an_unknown_function_fails_the_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="lost", trigger=TriggerEvent("go"))
    async def lost(ctx: Context) -> Any:
        await ctx.step.invoke("call", function="does-not-exist")

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        history = [(h.kind, h.step_id) for h in await t.history(run.run_id)]
    assert run.status == "FAILED"
    assert run.error is not None and "does-not-exist" in run.error["message"]
    assert [(s.id, s.status) for s in run.steps] == [("call", "FAILED")]
    assert ("STEP_FAILED", "call") in history


async def test_a_worker_purges_the_rows_of_resolved_waits_the_sqlite_store_kept(
    app: App, tmp_path: Path
) -> None:
    # issue 6 (matching costs): the SQLite store keeps a resolved wait's row (marked resolved)
    # for a batched delete: a run that ends drops it with its work; one that goes on (here
    # into a sleep) keeps it until a worker's housekeeping deletes such rows, every
    # WAIT_PURGE_EVERY seconds, many at a time
    _register_waiter(app)

    @app.function(id="sleeper", trigger=TriggerEvent("order/held"))
    async def sleeper(ctx: Context) -> str:
        await ctx.step.wait_for_event(
            "payment",
            event="payment/received",
            if_="async.data.orderId == event.data.orderId",
            timeout="1d",
        )
        await ctx.step.sleep("nap", "1h")
        return "done"

    path = tmp_path / "stepline.db"
    sqlitetest.fresh_database(path)
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=path, clock=clock) as t:
        [ended_id] = await t.send(Event("order/created", {"orderId": "o1"}))
        [going_id] = await t.send(Event("order/held", {"orderId": "o2"}))
        [ended] = await t.runs(event_id=ended_id)
        [going] = await t.runs(event_id=going_id)
        await t.wait_for_status(ended.run_id, "WAITING")
        await t.wait_for_status(going.run_id, "WAITING")
        await t.send(Event("payment/received", {"orderId": "o1", "amount": 99}))
        assert (await t.wait_for_run(ended.run_id)).output == {"paid": True, "amount": 99}
        assert _wait_rows(path) == (1, 0)  # the ended run's went with it
        await t.send(Event("payment/received", {"orderId": "o2", "amount": 5}))
        await t.wait_for_status(going.run_id, "SLEEPING")
        assert _wait_rows(path) == (1, 1)  # kept, resolved
        clock.advance(WAIT_PURGE_EVERY)
        await t.tick()
        assert _wait_rows(path) == (0, 0)


def _wait_rows(path: Path) -> tuple[int, int]:
    """How many rows ``waits`` holds, and how many of them are resolved (their step no longer
    PENDING, schema 28: kept for the purge)."""
    with closing(sqlite3.connect(path)) as conn:
        [(rows,)] = conn.execute("SELECT count(*) FROM waits")
        [(resolved,)] = conn.execute(f"SELECT count(*) FROM waits WHERE NOT {PENDING}")
    return rows, resolved
