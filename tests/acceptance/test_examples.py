"""Every pattern in ``examples/patterns`` does what its docstring claims.

Each example runs on a fresh SQLite file with virtual time (``MockClock``): sleeps, wait
timeouts and retry backoffs finish at once. The examples' stand-in services are replaced by
spies that record their calls (and the virtual time of each), and can fail on purpose.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from examples.patterns import (
    basic_function,
    conditional_steps,
    determinism,
    error_recovery,
    event_filter,
    event_idempotency,
    fan_out,
    invoke,
    logging_practices,
    multiple_triggers,
    non_retriable,
    parallel_steps,
    retries,
    retry_after,
    sleep,
    step_ids,
    wait_for_event,
)

from stepline import App, Event, Run
from stepline.testing import MockClock, TestEngine

DAY = 86400.0
ALWAYS = 10**6  # fail this many calls: every call


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture
def engine(tmp_path: Path) -> Callable[..., TestEngine]:
    """``engine(app)`` runs ``app`` on a fresh SQLite file with virtual time (autojump)."""

    def make(app: App, clock: MockClock | None = None) -> TestEngine:
        return TestEngine(app, store="sqlite", path=tmp_path / "x.db", clock=clock)

    return make


@dataclass
class Calls:
    """What a spy saw: the arguments of each call and the virtual time it happened at."""

    args: list[tuple[Any, ...]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.args)


def spy(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    name: str,
    *,
    fails: int = 0,
    error: Callable[[int], Exception] = lambda n: ConnectionError(f"call {n} failed"),
    clock: MockClock | None = None,
    result: Callable[..., Awaitable[Any]] | None = None,
) -> Calls:
    """Replace ``module.name`` (a stand-in service) by a recorder that raises ``error`` on its
    first ``fails`` calls, then delegates to ``result`` (default: the original). The recorder is
    async if the original is."""
    original = getattr(module, name)
    real = result or original
    calls = Calls()

    def record(args: tuple[Any, ...]) -> None:
        calls.args.append(args)
        if clock is not None:
            calls.times.append(clock.now())
        if len(calls) <= fails:
            raise error(len(calls))

    async def fake_async(*args: Any) -> Any:
        record(args)
        return await real(*args)

    def fake_sync(*args: Any) -> Any:
        record(args)
        return real(*args)

    fake = fake_async if inspect.iscoroutinefunction(original) else fake_sync
    monkeypatch.setattr(module, name, fake)
    return calls


async def start(t: TestEngine, event: Event) -> str:
    """Send an event that starts exactly one run; return the run's id (not waiting for it)."""
    [event_id] = await t.send(event)
    [run] = await t.runs(event_id=event_id)
    return run.run_id


async def runs_of(t: TestEngine, event: Event) -> list[Run]:
    """Send an event and return the runs it started, once they have ended."""
    [event_id] = await t.send(event)
    return [await t.wait_for_run(r.run_id) for r in await t.runs(event_id=event_id)]


def steps(run: Run) -> list[tuple[str, str, int]]:
    """A run's steps as (id, status, attempts)."""
    return [(s.id, s.status, s.attempts) for s in run.steps]


async def kinds(t: TestEngine, run: Run) -> list[str]:
    """The kinds of a run's history entries."""
    return [h.kind for h in await t.history(run.run_id)]


# -- determinism -----------------------------------------------------------------------------------
async def test_a_timestamp_taken_in_a_step_is_taken_once_and_replayed(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    processed = spy(monkeypatch, determinism, "process_data")
    published = spy(monkeypatch, determinism, "publish")
    async with engine(determinism.app) as t:
        run = await t.trigger(Event("data/process.requested", {"id": "r-1"}))
        history = await kinds(t, run)
    assert run.status == "COMPLETED"
    assert "SLEEP" in history  # the function was entered twice, before and after the sleep
    assert len(processed) == 1
    [(_, stamp)] = processed.args
    assert run.output == {"id": "r-1", "processedAt": stamp}
    assert published.args == [({"id": "r-1", "processedAt": stamp},)]


# -- step ids --------------------------------------------------------------------------------------
async def test_a_reused_step_id_is_a_second_step_with_its_own_result(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = spy(monkeypatch, step_ids, "fetch_user_data")
    orders = spy(monkeypatch, step_ids, "fetch_order_data", fails=1)  # forces a replay
    async with engine(step_ids.app) as t:
        run = await t.trigger(Event("account/load.requested", {"userId": "u-1"}))
    assert run.output == {
        "user": {"userId": "u-1", "name": "Ada"},
        "orders": [{"orderId": "o-1", "userId": "u-1"}],
    }
    assert steps(run) == [("fetch-data", "COMPLETED", 1), ("fetch-data:1", "COMPLETED", 2)]
    assert (len(users), len(orders)) == (1, 2)  # the replay took fetch-data from storage


async def test_descriptive_step_ids_name_the_history(engine: Callable[..., TestEngine]) -> None:
    order = {"orderId": "o-9", "paymentId": "p-1", "amount": 30, "email": "a@example.com"}
    async with engine(step_ids.app) as t:
        run = await t.trigger(Event("checkout/submitted", order))
    assert [s.id for s in run.steps] == ["validate-payment", "charge-customer", "send-confirmation"]
    assert run.output == {"chargeId": "ch-o-9", "amount": 30}


# -- a basic function ------------------------------------------------------------------------------
async def test_basic_function_runs_its_steps(engine: Callable[..., TestEngine]) -> None:
    async with engine(basic_function.app) as t:
        run = await t.trigger(Event("order/created", {"orderId": "o-1", "amount": 12.5}))
    assert run.output == {"reservationId": "res-o-1", "chargeId": "ch-o-1", "amount": 12.5}
    assert basic_function.process_order.id == "process-order"
    assert basic_function.process_order.retries == 4


async def test_basic_function_gives_a_failing_step_five_attempts(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    charges = spy(monkeypatch, basic_function, "charge_customer", fails=ALWAYS)
    async with engine(basic_function.app) as t:
        run = await t.trigger(Event("order/created", {"orderId": "o-2", "amount": 1}))
    assert run.status == "FAILED"
    assert len(charges) == 5
    assert steps(run) == [
        ("reserve-inventory", "COMPLETED", 1),
        ("charge-customer", "FAILED", 5),
    ]


# -- triggers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "starts"),
    [
        ({"userId": "u-1", "action": "purchase", "amount": 150}, True),
        ({"userId": "u-1", "action": "purchase", "amount": 100}, False),
        ({"userId": "u-1", "action": "view", "amount": 500}, False),
        ({"userId": "u-1", "action": "purchase"}, False),  # missing amount: null, not an error
    ],
)
async def test_event_filter_selects_large_purchases(
    engine: Callable[..., TestEngine], data: dict[str, Any], starts: bool
) -> None:
    async with engine(event_filter.app) as t:
        runs = await runs_of(t, Event("user/action", data))
    assert [r.output for r in runs] == ([{"userId": "u-1", "points": 15}] if starts else [])


async def test_a_trigger_without_filter_takes_every_event(
    engine: Callable[..., TestEngine],
) -> None:
    async with engine(event_filter.app) as t:
        run = await t.trigger(Event("user/signup", {"email": "a@example.com"}))
    assert (run.function_id, run.status) == ("welcome-user", "COMPLETED")


async def test_multiple_triggers(engine: Callable[..., TestEngine]) -> None:
    saturday = datetime(2026, 5, 2, 12, 0, tzinfo=UTC).timestamp()
    clock = MockClock(start=saturday, autojump=False)  # autojump would race through the Sundays
    async with engine(multiple_triggers.app, clock) as t:
        signup = await runs_of(t, Event("user/signup", {"userId": "u-1"}))
        first = await runs_of(t, Event("user/login", {"userId": "u-2", "firstLogin": True}))
        again = await runs_of(t, Event("user/login", {"userId": "u-2", "firstLogin": False}))
        unknown = await runs_of(t, Event("user/login", {"userId": "u-3"}))
        report = await runs_of(t, Event("manual/report.requested", {"requestedBy": "ops"}))
        clock.advance(12 * 3600)  # Sunday 00:00 UTC: the weekly cron tick
        await t.tick()  # the worker has looked for work since: the tick's run exists
        reports = await t.runs(function_id="weekly-report")
        [scheduled] = [r for r in reports if r.run_id != report[0].run_id]
        scheduled = await t.wait_for_run(scheduled.run_id)
        [tick] = await t.app.engine.read(t.app.engine.store.get_events, scheduled.event_ids)
    assert [r.output for r in signup] == [{"userId": "u-1", "source": "user/signup"}]
    assert [r.output for r in first] == [{"userId": "u-2", "source": "user/login"}]
    assert again == unknown == []
    assert [r.output for r in report] == [{"rows": 3, "requestedBy": "ops"}]
    assert scheduled.output == {"rows": 3, "requestedBy": None}
    assert (tick.name, tick.data) == ("inngest/scheduled.timer", {"cron": "0 0 * * 0"})
    assert tick.ts == saturday + 12 * 3600


# -- invoke ----------------------------------------------------------------------------------------
async def test_invoke_returns_the_child_result_to_the_next_step(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = spy(monkeypatch, invoke, "store_report")
    async with engine(invoke.app) as t:
        run = await t.trigger(Event("user/summary.requested", {"userId": "u-7"}))
        [child] = await t.runs(function_id="generate-report")
    report = {"userId": "u-7", "logins": 15}
    assert run.output == {"report": report, "location": "reports/u-7.json"}
    assert [s.id for s in run.steps] == ["generate-report", "process-report"]
    assert (child.status, child.output) == ("COMPLETED", report)
    assert stored.args == [("u-7", report)]


# -- producer-side idempotency ---------------------------------------------------------------------
async def test_an_event_id_seen_in_the_last_24_hours_starts_no_run(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    receipts = spy(monkeypatch, event_idempotency, "send_receipt")
    async with engine(event_idempotency.app) as t:

        async def checkout(cart_id: str, email: str) -> list[Run]:
            """Announce a checkout; the runs it started, once ended."""
            [event_id] = await event_idempotency.complete_checkout(cart_id, email)
            return [await t.wait_for_run(r.run_id) for r in await t.runs(event_id=event_id)]

        first = await checkout("cart-1", "a@example.com")
        duplicate = await checkout("cart-1", "a@example.com")
        other_cart = await checkout("cart-2", "b@example.com")
        t.clock.advance(DAY - 60)
        still_duplicate = await checkout("cart-1", "a@example.com")
        t.clock.advance(120)  # the first send is now more than 24 h old
        next_day = await checkout("cart-1", "a@example.com")
    assert [len(first), len(duplicate), len(other_cart), len(still_duplicate), len(next_day)] == [
        1,
        0,
        1,
        0,
        1,
    ]
    assert [r.output for r in first + other_cart + next_day] == ["cart-1", "cart-2", "cart-1"]
    assert receipts.args == [
        ("a@example.com", "cart-1"),
        ("b@example.com", "cart-2"),
        ("a@example.com", "cart-1"),
    ]


# -- retries ---------------------------------------------------------------------------------------
async def test_each_step_has_its_own_retry_counter(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy(monkeypatch, retries, "fetch_stock", fails=3)
    spy(monkeypatch, retries, "update_listing", fails=4)
    async with engine(retries.app) as t:
        run = await t.trigger(Event("inventory/sync.requested", {"sku": "s-1"}))
    assert run.output == {"sku": "s-1", "stock": 7}
    assert steps(run) == [("fetch-stock", "COMPLETED", 4), ("update-listing", "COMPLETED", 5)]


async def test_default_policy_is_five_attempts_with_exponential_backoff(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = MockClock()
    fetches = spy(monkeypatch, retries, "fetch_stock", fails=ALWAYS, clock=clock)
    async with engine(retries.app, clock) as t:
        run = await t.trigger(Event("inventory/sync.requested", {"sku": "s-1"}))
    assert run.status == "FAILED"
    assert run.error is not None and "call 5 failed" in run.error["message"]
    assert len(fetches) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(fetches.times)]
    for n, gap in enumerate(gaps):  # attempt n waits between half and all of 2 * 2**n seconds
        assert 2**n <= gap <= 2 * 2**n + 0.01, (n, gaps)


async def test_ctx_attempt_takes_the_backup_path_on_late_attempts(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = spy(monkeypatch, retries, "deliver_via_primary", fails=ALWAYS)
    backup = spy(monkeypatch, retries, "deliver_via_backup")
    async with engine(retries.app) as t:
        run = await t.trigger(Event("critical/task", {"id": 1}))
    assert run.output == "backup"
    assert (len(primary), len(backup)) == (6, 1)  # attempts 0-5, then attempt 6
    assert steps(run) == [("deliver", "COMPLETED", 7)]


async def test_retries_10_allows_eleven_attempts(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy(monkeypatch, retries, "deliver_via_primary", fails=ALWAYS)
    spy(monkeypatch, retries, "deliver_via_backup", fails=ALWAYS)
    async with engine(retries.app) as t:
        run = await t.trigger(Event("critical/task", {"id": 1}))
    assert run.status == "FAILED"
    assert steps(run) == [("deliver", "FAILED", 11)]


async def test_non_retriable_error_fails_at_the_first_attempt(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = spy(monkeypatch, non_retriable, "find_user")
    async with engine(non_retriable.app) as t:
        missing = await t.trigger(Event("user/process.requested", {"userId": "nobody"}))
        found = await t.trigger(Event("user/process.requested", {"userId": "u-1"}))
    assert missing.status == "FAILED"
    assert missing.error is not None
    assert "User not found, stopping execution" in missing.error["message"]
    assert steps(missing) == [("fetch-user", "FAILED", 1)]
    assert lookups.args == [("nobody",), ("u-1",)]  # one attempt each
    assert found.output == {"id": "u-1", "name": "Ada", "plan": "free", "refreshed": True}


async def test_a_429_is_retried_after_the_delay_the_api_asked_for(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = MockClock()

    async def rate_limited_once(payload: dict[str, Any]) -> retry_after.ApiResponse:
        if len(calls) == 1:
            return retry_after.ApiResponse(429, headers={"retry-after": "30"})
        return retry_after.ApiResponse(200, {"ok": payload["n"]})

    calls = spy(
        monkeypatch, retry_after, "call_external_api", clock=clock, result=rate_limited_once
    )
    async with engine(retry_after.app, clock) as t:
        run = await t.trigger(Event("api/call.requested", {"n": 1}))
        history = await t.history(run.run_id)
    assert run.output == {"ok": 1}
    assert len(calls) == 2
    assert calls.times[1] - calls.times[0] == pytest.approx(30, abs=0.01)  # not the 1-2 s backoff
    [failed] = [h for h in history if h.kind == "STEP_FAILED"]
    assert failed.data is not None
    assert failed.data["error"]["name"] == "RetryAfterError"


# -- logging ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flaky", "expected"),
    [
        (
            "fetch_user_data",  # an inside-step line appears once per attempt
            [
                "processing started",
                "fetching data for user",
                "fetching data for user",
                "processing complete",
            ],
        ),
        (
            "save_results",  # replaying the finished fetch-data logs nothing
            ["processing started", "fetching data for user", "processing complete"],
        ),
    ],
)
async def test_outside_step_log_lines_appear_once_per_run(
    engine: Callable[..., TestEngine],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    flaky: str,
    expected: list[str],
) -> None:
    spy(monkeypatch, logging_practices, flaky, fails=1)  # one retry: a second pass replays
    caplog.set_level(logging.INFO, logger=logging_practices.logger.name)
    async with engine(logging_practices.app) as t:
        run = await t.trigger(Event("data/process.requested", {"userId": "u-1"}))
    assert run.output == 2
    records = [r for r in caplog.records if r.name == logging_practices.logger.name]
    assert [r.getMessage() for r in records] == expected
    assert {r.run_id for r in records} == {run.run_id}  # type: ignore[attr-defined]
    assert records[-1].resultCount == 2  # type: ignore[attr-defined]


# -- conditional steps and fallbacks ---------------------------------------------------------------
@pytest.mark.parametrize("premium", [True, False])
async def test_premium_processing_runs_only_for_premium_users(
    engine: Callable[..., TestEngine], premium: bool
) -> None:
    async with engine(conditional_steps.app) as t:
        t.mock_step("fetch-user", {"userId": "u-1", "isPremium": premium})
        run = await t.trigger(Event("process/conditional", {"userId": "u-1"}))
    expected = ["fetch-user", "premium-processing", "standard-processing"]
    assert [s.id for s in run.steps] == (expected if premium else [expected[0], expected[2]])
    assert len(run.output) == (2 if premium else 1)


async def test_a_failed_primary_service_falls_back(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = spy(monkeypatch, error_recovery, "call_primary_service", fails=ALWAYS)
    async with engine(error_recovery.app) as t:
        run = await t.trigger(Event("process/robust", {"job": 1}))
    assert run.status == "COMPLETED"
    assert run.output == {"result": {"provider": "secondary", "input": {"job": 1}}}
    assert steps(run) == [("primary-service", "FAILED", 5), ("fallback-service", "COMPLETED", 1)]
    assert len(primary) == 5


async def test_no_fallback_when_the_primary_service_works(
    engine: Callable[..., TestEngine],
) -> None:
    async with engine(error_recovery.app) as t:
        run = await t.trigger(Event("process/robust", {"job": 2}))
    assert run.output == {"result": {"provider": "primary", "input": {"job": 2}}}
    assert [s.id for s in run.steps] == ["primary-service"]


# -- sleeps ----------------------------------------------------------------------------------------
async def test_sleep_and_sleep_until_resume_at_the_right_virtual_times(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = MockClock()
    emails = spy(monkeypatch, sleep, "send_email", clock=clock)
    trial_end = datetime.fromtimestamp(clock.now(), UTC) + timedelta(days=14)
    async with engine(sleep.app, clock) as t:
        data = {"email": "a@x.io", "trialEndsAt": trial_end.isoformat()}
        event = Event("user/trial.started", data)
        run = await t.trigger(event)
    assert run.status == "COMPLETED"
    assert [args[1] for args in emails.args] == ["welcome", "tips", "trial-ended"]
    welcome, tips, ended = emails.times
    assert tips - welcome == pytest.approx(7 * DAY, abs=1)
    assert ended == pytest.approx(trial_end.timestamp(), abs=1)


async def test_a_sleeping_run_waits_for_its_time_and_a_past_time_returns_at_once(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = MockClock(autojump=False)
    emails = spy(monkeypatch, sleep, "send_email")
    trial_end = datetime.fromtimestamp(clock.now(), UTC) + timedelta(days=3)  # before the tips
    async with engine(sleep.app, clock) as t:
        data = {"email": "a@x.io", "trialEndsAt": trial_end.isoformat()}
        event = Event("user/trial.started", data)
        run_id = await start(t, event)
        sleeping = await t.wait_for_status(run_id, "SLEEPING")
        assert [args[1] for args in emails.args] == ["welcome"]
        assert [(s.id, s.status) for s in sleeping.steps][-1] == ("wait-a-week", "PENDING")
        clock.advance(7 * DAY)
        run = await t.wait_for_run(run_id)
    assert run.status == "COMPLETED"
    assert [args[1] for args in emails.args] == ["welcome", "tips", "trial-ended"]


# -- waiting for events ----------------------------------------------------------------------------
async def test_wait_for_event_with_match_resumes_on_the_same_users_event(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    nudges = spy(monkeypatch, wait_for_event, "send_nudge")
    async with engine(wait_for_event.app, MockClock(autojump=False)) as t:
        run_id = await start(t, Event("app/user.signed_up", {"userId": "u-1", "email": "a@x.io"}))
        await t.wait_for_status(run_id, "WAITING")
        await t.send(Event("app/onboarding.completed", {"userId": "u-2", "steps": 1}))
        await t.send(Event("app/onboarding.completed", {"userId": "u-1", "steps": 4}))
        run = await t.wait_for_run(run_id)
    assert run.output == {"onboarded": True, "steps": 4}
    assert len(nudges) == 0


async def test_wait_for_event_times_out_with_none(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    nudges = spy(monkeypatch, wait_for_event, "send_nudge")
    async with engine(wait_for_event.app) as t:
        run = await t.trigger(Event("app/user.signed_up", {"userId": "u-1", "email": "a@x.io"}))
        history = await kinds(t, run)
    assert run.output == {"onboarded": False}
    assert nudges.args == [("a@x.io",)]
    assert "WAIT_TIMED_OUT" in history
    assert run.ended_at is not None and run.started_at is not None
    assert run.ended_at - run.started_at >= timedelta(days=3)


async def test_wait_for_event_with_if_needs_the_same_order_and_enough_money(
    engine: Callable[..., TestEngine],
) -> None:
    async with engine(wait_for_event.app, MockClock(autojump=False)) as t:
        run_id = await start(t, Event("order/created", {"orderId": "o-1", "amount": 100}))
        await t.wait_for_status(run_id, "WAITING")
        for payment in (
            {"orderId": "o-1", "amount": 50, "paymentId": "too-little"},
            {"orderId": "o-2", "amount": 100, "paymentId": "other-order"},
            {"orderId": "o-1", "amount": 120, "paymentId": "pay-1"},
        ):
            await t.send(Event("payment/received", payment))
        run = await t.wait_for_run(run_id)
    assert run.output == {"status": "paid", "paymentId": "pay-1"}


async def test_an_unpaid_order_is_cancelled_after_a_day(
    engine: Callable[..., TestEngine],
) -> None:
    async with engine(wait_for_event.app) as t:
        run = await t.trigger(Event("order/created", {"orderId": "o-3", "amount": 10}))
    assert run.output == {"status": "cancelled o-3"}


# -- fan-out and parallel steps --------------------------------------------------------------------
async def test_send_event_fans_out_one_run_per_subscriber_once(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy(monkeypatch, fan_out, "mark_sent", fails=1)  # a retry replays past the fan-out step
    emails = spy(monkeypatch, fan_out, "send_email")
    async with engine(fan_out.app) as t:
        run = await t.trigger(Event("digest/weekly.requested", {"week": "2024-W10"}))
        children = [
            await t.wait_for_run(r.run_id) for r in await t.runs(function_id="send-user-digest")
        ]
    assert run.output == {"sent": 3}
    assert [(s.id, s.status) for s in run.steps] == [
        ("load-subscribers", "COMPLETED"),
        ("fan-out", "COMPLETED"),
        ("mark-sent", "COMPLETED"),
    ]
    assert run.steps[2].attempts == 2
    assert sorted(c.output for c in children) == ["u-1", "u-2", "u-3"]
    assert all(c.status == "COMPLETED" for c in children)
    assert sorted(args[0] for args in emails.args) == [
        "ada@example.com",
        "alan@example.com",
        "grace@example.com",
    ]


async def test_parallel_steps_run_at_the_same_time(
    engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = [
        ("fetch_profile", "fetch_orders"),  # step.parallel
        ("fetch_recommendations", "fetch_notifications"),  # asyncio.gather
    ]
    seen: list[Calls] = []
    for pair in pairs:
        barrier = asyncio.Barrier(2)  # each call of a pair returns only once both have started

        for name in pair:
            real = getattr(parallel_steps, name)

            async def together(user_id: str, real: Any = real, barrier: Any = barrier) -> Any:
                async with asyncio.timeout(5):
                    await barrier.wait()
                return await real(user_id)

            seen.append(spy(monkeypatch, parallel_steps, name, result=together))
    async with engine(parallel_steps.app) as t:
        run = await t.trigger(Event("dashboard/requested", {"userId": "u-1"}))
    assert run.status == "COMPLETED", run.error
    assert run.output == {
        "profile": {"userId": "u-1", "name": "Ada"},
        "orders": ["o-1", "o-2"],
        "recommendations": ["book", "lamp"],
        "unread": 3,
    }
    assert [len(calls) for calls in seen] == [1, 1, 1, 1]
    assert [s.id for s in run.steps] == [
        "fetch-profile",
        "fetch-orders",
        "fetch-recommendations",
        "fetch-notifications",
    ]


async def test_checkpointing_commits_the_two_steps_together(tmp_path: Path) -> None:
    from examples.patterns import checkpointing

    async with TestEngine(checkpointing.app, path=tmp_path / "c.db") as t:
        run = await t.trigger(Event("realtime/process", {"value": 20}))
        history = [(h.kind, h.step_id) for h in await t.history(run.run_id)]
    assert run.output == {"result2": 42}
    assert [s.id for s in run.steps] == ["step-1", "step-2"]
    assert history[-3:] == [
        ("STEP_COMPLETED", "step-1"),
        ("STEP_COMPLETED", "step-2"),
        ("RUN_COMPLETED", None),
    ]
