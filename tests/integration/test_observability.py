"""The replay-aware logger, determinism warnings, histories, cancellation and step mocking."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine


async def test_logs_outside_steps_are_not_duplicated_by_replay(
    app: App, make_engine: Callable[..., TestEngine], caplog: pytest.LogCaptureFixture
) -> None:
    @app.function(id="chatty", trigger=TriggerEvent("go"))
    async def chatty(ctx: Context) -> Any:
        ctx.logger.info("starting")
        await ctx.step.run("one", lambda: 1)
        await ctx.step.sleep("nap", "1h")
        ctx.logger.info("after nap")
        await ctx.step.sleep("nap2", "1h")
        ctx.logger.info("done", extra={"k": "v"})

    with caplog.at_level(logging.INFO, logger="stepline.test-app"):
        async with make_engine() as t:
            run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED"
    messages = [r.getMessage() for r in caplog.records if r.name == "stepline.test-app"]
    assert messages == ["starting", "after nap", "done"]
    done = next(r for r in caplog.records if r.getMessage() == "done")
    assert done.run_id == run.run_id  # type: ignore[attr-defined]
    assert done.k == "v"  # type: ignore[attr-defined]


async def test_nondeterministic_functions_record_a_warning(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    passes = {"n": 0}

    @app.function(id="shifty", trigger=TriggerEvent("go"))
    async def shifty(ctx: Context) -> Any:
        passes["n"] += 1
        if passes["n"] == 1:
            await ctx.step.run("original", lambda: 1)
        await ctx.step.sleep("nap", "1m")
        await ctx.step.run("later", lambda: 2)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        history = await t.history(run.run_id)
    warnings = [h for h in history if h.kind == "WARNING"]
    assert warnings
    assert warnings[0].data is not None
    assert "original" in warnings[0].data["message"]


async def test_a_replayed_pass_warns_once_and_only_when_it_skips_memoized_steps(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    """The determinism check stops looking once it warned or found every memoized step
    reached (engstep: later rounds skip its set difference): a pass that replays its steps in
    order and goes on with several new rounds records no warning; one that skips a memoized
    step records exactly one, however many rounds follow."""
    passes = {"steady": 0, "shifty": 0}

    @app.function(id="steady", trigger=TriggerEvent("steady"))
    async def steady(ctx: Context) -> Any:
        passes["steady"] += 1
        for i in range(3):
            await ctx.step.run(f"before-{i}", lambda i=i: i)
        await ctx.step.sleep("nap", "1m")
        for i in range(4):
            await ctx.step.run(f"after-{i}", lambda i=i: i)

    @app.function(id="shifty-many", trigger=TriggerEvent("shifty"))
    async def shifty(ctx: Context) -> Any:
        passes["shifty"] += 1
        if passes["shifty"] == 1:
            await ctx.step.run("original", lambda: 1)
        await ctx.step.sleep("nap", "1m")
        for i in range(4):
            await ctx.step.run(f"later-{i}", lambda i=i: i)

    async with make_engine() as t:
        kept = await t.trigger(Event("steady"))
        skipped = await t.trigger(Event("shifty"))
        kept_history = await t.history(kept.run_id)
        skipped_history = await t.history(skipped.run_id)
    assert kept.status == "COMPLETED" and skipped.status == "COMPLETED"
    assert passes["steady"] >= 2 and passes["shifty"] >= 2  # the nap ended a pass
    assert [h for h in kept_history if h.kind == "WARNING"] == []
    warnings = [h for h in skipped_history if h.kind == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0].data is not None and "original" in warnings[0].data["message"]
    assert warnings[0].step_id == "later-0"


async def test_history_records_every_attempt_and_transition(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls = {"n": 0}

    @app.function(id="traced", trigger=TriggerEvent("go"))
    async def traced(ctx: Context) -> Any:
        def flaky() -> str:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ValueError("first try fails")
            return "ok"

        await ctx.step.run("flaky", flaky)
        await ctx.step.sleep("nap", "1s")
        return "done"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        history = await t.history(run.run_id)
    kinds = [(h.kind, h.step_id, h.attempt) for h in history]
    assert kinds == [
        ("RUN_QUEUED", None, None),
        ("RUN_STARTED", None, None),
        ("STEP_FAILED", "flaky", 0),
        ("STEP_COMPLETED", "flaky", 1),
        ("SLEEP", "nap", None),
        ("RUN_COMPLETED", None, None),
    ]
    failed = history[2]
    assert failed.data is not None
    assert failed.data["error"]["message"] == "first try fails"
    assert all(h.at >= history[0].at for h in history)


async def test_cancel_run_stops_a_sleeping_run(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    ran_after = {"n": 0}

    @app.function(id="sleepy", trigger=TriggerEvent("go"))
    async def sleepy(ctx: Context) -> Any:
        await ctx.step.sleep("long", "7d")
        ran_after["n"] += 1

    async with make_engine(clock=MockClock(autojump=False)) as t:
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "SLEEPING")
        assert await t.app.cancel_run(run.run_id) is True
        assert await t.app.cancel_run(run.run_id) is False
        done = await t.wait_for_run(run.run_id)
    assert done.status == "CANCELLED"
    assert ran_after["n"] == 0


async def test_step_mocking_by_id(app: App, make_engine: Callable[..., TestEngine]) -> None:
    @app.function(id="mocked", trigger=TriggerEvent("go"))
    async def mocked(ctx: Context) -> Any:
        def real_call() -> str:
            raise AssertionError("the real API must not be called")

        return await ctx.step.run("call-api", real_call)

    async with make_engine() as t:
        t.mock_step("call-api", {"status": 200})
        run = await t.trigger(Event("go"))
    assert run.output == {"status": 200}


async def test_each_step_attempt_is_counted_before_the_function_gets_its_outcome(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # a lone step's attempt is counted while its commit is in flight (off the step's path),
    # still before its result is handed to the function
    seen: list[int] = []
    engines: list[Any] = []

    @app.function(id="counted", trigger=TriggerEvent("go"))
    async def counted(ctx: Context) -> Any:
        for i in range(3):
            await ctx.step.run(f"s{i}", lambda i=i: i)
            seen.append(engines[0].metrics.step_attempts.get("completed", 0))
        return "done"

    async with make_engine() as t:
        engines.append(t.app.engine)
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED"
    assert seen == [1, 2, 3]
