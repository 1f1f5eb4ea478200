"""Retries: attempts, backoff, NonRetriableError, RetryAfterError, StepError fallbacks,
function-level errors, on_failure and system events."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stepline import (
    App,
    Context,
    Event,
    NonRetriableError,
    RetryAfterError,
    RetryBackoff,
    StepError,
    TriggerEvent,
)
from stepline.testing import MockClock, TestEngine


async def test_a_failing_step_is_attempted_one_plus_retries_times(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    attempts: list[int] = []

    @app.function(id="flaky", trigger=TriggerEvent("go"), retries=3)
    async def flaky(ctx: Context) -> Any:
        def fail() -> None:
            attempts.append(ctx.attempt)
            raise ValueError("boom")

        await ctx.step.run("always-fails", fail)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert attempts == [0, 1, 2, 3]
    assert run.status == "FAILED"
    assert run.error is not None and run.error["name"] == "StepError"
    assert "boom" in run.error["message"]
    [step] = run.steps
    assert (step.status, step.attempts) == ("FAILED", 4)


async def test_default_policy_is_five_attempts(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls = Counter[str]()

    @app.function(id="default", trigger=TriggerEvent("go"))
    async def default(ctx: Context) -> Any:
        def fail() -> None:
            calls["x"] += 1
            raise RuntimeError("nope")

        await ctx.step.run("x", fail)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert calls["x"] == 5


async def test_a_step_that_recovers_keeps_its_result(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls = Counter[str]()

    @app.function(id="recovers", trigger=TriggerEvent("go"))
    async def recovers(ctx: Context) -> Any:
        def sometimes() -> str:
            calls["x"] += 1
            if calls["x"] < 3:
                raise ConnectionError("flaky network")
            return "ok"

        return await ctx.step.run("x", sometimes)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        history = await t.history(run.run_id)
    assert run.output == "ok"
    assert calls["x"] == 3
    failures = [h for h in history if h.kind == "STEP_FAILED"]
    assert [h.attempt for h in failures] == [0, 1]


async def test_fast_backoff_doubles_with_jitter_within_bounds() -> None:
    for attempt in range(14):
        base = min(3600.0, 2.0**attempt)  # 1 s, 2 s, 4 s … then 1 h (the test kit's backoff)
        delays = [RetryBackoff.FAST.delay(attempt) for _ in range(200)]
        assert all(base <= d <= base + 1 for d in delays)
        assert len(set(delays)) > 1  # jittered


async def test_retry_waits_follow_the_backoff(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    times: list[float] = []

    @app.function(id="timed", trigger=TriggerEvent("go"), retries=3)
    async def timed(ctx: Context) -> Any:
        def fail() -> None:
            times.append(t.clock.now())
            raise ValueError("again")

        await ctx.step.run("x", fail)

    async with make_engine() as t:
        await t.trigger(Event("go"))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for attempt, gap in enumerate(gaps):
        ceiling = 2.0 * 2**attempt
        assert ceiling / 2 <= gap <= ceiling + 0.5, (attempt, gap)


async def test_non_retriable_error_fails_after_one_attempt(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls = Counter[str]()

    @app.function(id="fatal", trigger=TriggerEvent("go"))
    async def fatal(ctx: Context) -> Any:
        def missing_user() -> None:
            calls["x"] += 1
            raise NonRetriableError("User not found")

        await ctx.step.run("fetch-user", missing_user)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert calls["x"] == 1
    assert run.status == "FAILED"
    assert run.error is not None and "User not found" in run.error["message"]


async def test_retry_after_error_delay_is_honoured(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    times: list[float] = []

    @app.function(id="rate-limited", trigger=TriggerEvent("go"))
    async def rate_limited(ctx: Context) -> Any:
        def call_api() -> str:
            times.append(t.clock.now())
            if len(times) == 1:
                raise RetryAfterError("429", 120)
            return "done"

        return await ctx.step.run("call-api", call_api)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == "done"
    assert times[1] - times[0] == pytest.approx(120, abs=0.5)


async def test_step_error_is_catchable_for_fallbacks(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="fallback", trigger=TriggerEvent("go"), retries=1)
    async def fallback(ctx: Context) -> Any:
        def primary() -> str:
            raise ConnectionError("primary down")

        try:
            result = await ctx.step.run("primary-service", primary)
        except StepError as error:
            assert error.step_id == "primary-service"
            assert error.error_name == "ConnectionError"
            result = await ctx.step.run("fallback-service", lambda: "secondary")
        return result

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED"
    assert run.output == "secondary"
    assert [(s.id, s.status) for s in run.steps] == [
        ("primary-service", "FAILED"),
        ("fallback-service", "COMPLETED"),
    ]


async def test_errors_outside_steps_retry_the_function(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls = Counter[str]()

    @app.function(id="body-error", trigger=TriggerEvent("go"), retries=2)
    async def body_error(ctx: Context) -> Any:
        await ctx.step.run("once", lambda: calls.update(["step"]))
        calls["body"] += 1
        if calls["body"] < 3:
            raise KeyError("transient")
        return calls["body"]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == 3
    assert calls["step"] == 1  # memoized across function-level retries
    assert run.attempt == 2


async def test_errors_outside_steps_fail_the_run_when_exhausted(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="always", trigger=TriggerEvent("go"), retries=1)
    async def always(ctx: Context) -> Any:
        raise ValueError("bad input")

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.error is not None
    assert (run.error["name"], run.error["message"]) == ("ValueError", "bad input")


async def test_on_failure_and_system_events(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    failures: list[dict[str, Any]] = []
    finished: list[dict[str, Any]] = []

    async def handle_failure(ctx: Context) -> None:
        failures.append(ctx.event.data)

    @app.function(id="doomed", trigger=TriggerEvent("go"), retries=0, on_failure=handle_failure)
    async def doomed(ctx: Context) -> Any:
        if ctx.event.data.get("fail"):
            raise NonRetriableError("doomed")
        return "fine"

    @app.function(id="audit", trigger=TriggerEvent("inngest/function.finished"))
    async def audit(ctx: Context) -> None:
        if ctx.event.data["function_id"] == "doomed":
            finished.append(ctx.event.data)

    async with make_engine() as t:
        ok = await t.trigger(Event("go"))
        bad = await t.trigger(Event("go", {"fail": True}))
        for fn_id in ("doomed-failure", "audit"):
            for run in await t.runs(function_id=fn_id):
                await t.wait_for_run(run.run_id)
        await_runs = await t.runs(function_id="audit")
    assert ok.status == "COMPLETED" and bad.status == "FAILED"
    assert len(failures) == 1
    assert failures[0]["run_id"] == bad.run_id
    assert failures[0]["error"]["message"] == "doomed"
    assert failures[0]["event"]["data"] == {"fail": True}
    # function.finished for every ending (issue 7): the completed run and the failed one
    assert sorted(f["run_id"] for f in finished) == sorted([ok.run_id, bad.run_id])
    by_run = {f["run_id"]: f for f in finished}
    assert by_run[ok.run_id]["result"] == "fine"
    assert by_run[bad.run_id]["_inngest"] == {"status": "Failed"}
    # runs started by function.finished (audit) or function.failed (doomed-failure) announce
    # nothing at their end, as in Inngest's pkg/execution/executor/finalize.go (issue 7 review)
    assert len(await_runs) == 2  # doomed twice (completed, failed)


@pytest.mark.parametrize(("retry_after", "expected"), [("30s", 30), ("120", 120), ("1m30s", 90)])
async def test_retry_after_accepts_duration_strings(
    app: App, make_engine: Callable[..., TestEngine], retry_after: str, expected: float
) -> None:
    times: list[float] = []

    @app.function(id="header", trigger=TriggerEvent("go"))
    async def header(ctx: Context) -> Any:
        def call() -> str:
            times.append(t.clock.now())
            if len(times) == 1:
                raise RetryAfterError("429", retry_after)
            return "ok"

        return await ctx.step.run("call", call)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == "ok"
    assert times[1] - times[0] == pytest.approx(expected, abs=0.5)


async def _a_retry_woken_early(
    app: App,
    make_engine: Callable[..., TestEngine],
    first_attempt_ends: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """A run whose step raises ``RetryAfterError(600)`` once, beside a wait for "ping" that
    wakes the run before the retry is due: the retry keeps its backoff (it runs only once the
    clock passed it), and the step's row stays RETRYING meanwhile. The step runs in a thread,
    or, given ``first_attempt_ends``, is async and awaits it before failing."""
    import asyncio

    from stepline.testing import MockClock

    attempts: list[float] = []

    def attempt() -> bool:
        attempts.append(clock.now())
        return len(attempts) == 1

    def flaky() -> str:
        if attempt():
            raise RetryAfterError("later", 600)
        return "ok"

    async def flaky_async() -> str:
        if attempt():
            assert first_attempt_ends is not None
            await first_attempt_ends()
            raise RetryAfterError("later", 600)
        return "ok"

    @app.function(id="early-wake", trigger=TriggerEvent("go"), retries=1)
    async def early_wake(ctx: Context) -> Any:
        step = flaky if first_attempt_ends is None else flaky_async
        result, _ = await asyncio.gather(
            ctx.step.run("flaky", step),
            ctx.step.wait_for_event("ping", event="ping", timeout="1h"),
        )
        return result

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "RETRYING")
        await t.send(Event("ping"))  # wakes the run before the retry is due
        await t.tick()
        await t.tick()
        assert len(attempts) == 1
        engine = t.app.engine
        steps = await engine.read(engine.store.get_steps, run.run_id)
        assert [(s.step_id, s.status, s.attempts) for s in steps if s.kind == "run"] == [
            ("flaky", "RETRYING", 1)
        ]
        clock.advance(601)
        await t.tick()
        done = await t.wait_for_run(run.run_id)
    assert done.output == "ok"
    assert attempts[1] - attempts[0] >= 600


async def test_a_retry_keeps_its_backoff_when_the_run_wakes_early(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    await _a_retry_woken_early(app, make_engine)


async def test_a_retry_keeps_its_backoff_when_its_running_mark_was_late(
    app: App, make_engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The RUNNING mark of a round (engine/_executing.py) is made when the round is still
    # executing after SHOW_AFTER. The step here ends right after that timer fired: its
    # RETRYING result must not be overwritten by the mark, or the run, woken early by the
    # parallel wait, re-executes the step at once (red once in a gate, sixth stop)
    import asyncio

    from stepline.engine._executing import ExecutingSteps

    shown = asyncio.Event()
    show = ExecutingSteps._write

    def spy(self: ExecutingSteps, records: Any) -> None:
        shown.set()  # the step's end is then seen first, as when its thread ends meanwhile
        show(self, records)

    monkeypatch.setattr(ExecutingSteps, "_write", spy)
    await _a_retry_woken_early(app, make_engine, shown.wait)  # ends right after the mark


async def test_parallel_steps_each_see_their_own_attempt(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    seen: dict[str, list[int]] = {"flaky": [], "steady": []}

    @app.function(id="attempts", trigger=TriggerEvent("go"), retries=3)
    async def attempts(ctx: Context) -> Any:
        def flaky() -> str:
            seen["flaky"].append(ctx.attempt)
            if len(seen["flaky"]) < 3:
                raise ValueError("not yet")
            return "f"

        async def steady() -> str:
            seen["steady"].append(ctx.attempt)
            return "s"

        return await ctx.step.parallel(("flaky", flaky), ("steady", steady))

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == ["f", "s"]
    assert seen == {"flaky": [0, 1, 2], "steady": [0]}


class _TickingClock(MockClock):
    """A MockClock whose time moves 1 ms at each reading, as a wall clock read at two moments
    does (a GIL switch between two readings took 4 ms in a gate: ``stepline dev
    --retry-interval 1`` retried 0.996 s after the failure its history shows)."""

    def now(self) -> float:
        self.advance(0.001)
        return super().now()


@pytest.mark.parametrize("error", [RetryAfterError("later", 5), ValueError("again")])
async def test_a_retry_is_due_its_delay_after_the_failure_its_history_shows(
    app: App, make_engine: Callable[..., TestEngine], error: Exception
) -> None:
    @app.function(id="twice", trigger=TriggerEvent("go"), retries=1)
    async def twice(ctx: Context) -> Any:
        def once() -> str:
            if ctx.attempt == 0:
                raise error
            return "done"

        return await ctx.step.run("x", once)

    app.retry_backoff = RetryBackoff(schedule=(2.0,))  # no jitter: the delay is known
    async with make_engine(clock=_TickingClock()) as t:
        run = await t.trigger(Event("go"))
        history = await t.history(run.run_id)
    assert run.status == "COMPLETED"
    [failed] = [h for h in history if h.kind == "STEP_FAILED"]
    assert failed.data is not None
    delay = 5.0 if isinstance(error, RetryAfterError) else 2.0
    assert failed.data["retry_at"] - failed.at.timestamp() == pytest.approx(delay, abs=1e-5)
