"""Limits and bad input: named errors, nothing committed lost; non-JSON outputs; event size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pgtest
from stepline import App, Context, Event, EventError, Limits, TriggerEvent
from stepline.testing import TestEngine


@pytest.fixture
def small_app() -> App:
    return App(
        "limited",
        limits=Limits(
            max_steps=5,
            max_step_output_bytes=1000,
            max_run_state_bytes=3000,
            max_event_bytes=500,
        ),
    )


@pytest.fixture
def make_small(small_app: App, store_kind: str, tmp_path: Path) -> Callable[..., TestEngine]:
    def make(**options: Any) -> TestEngine:
        return TestEngine(
            small_app, store=pgtest.engine_store(store_kind), path=tmp_path / "s.db", **options
        )

    return make


async def test_step_limit_fails_the_run_and_keeps_committed_steps(
    small_app: App, make_small: Callable[..., TestEngine]
) -> None:
    @small_app.function(id="many", trigger=TriggerEvent("go"))
    async def many(ctx: Context) -> Any:
        for i in range(10):
            await ctx.step.run(f"s{i}", lambda i=i: i)

    async with make_small() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.error is not None
    assert (run.error["name"], run.error["limit"]) == ("LimitExceededError", "steps")
    assert [s.output for s in run.steps] == [0, 1, 2, 3, 4]


async def test_step_output_limit(small_app: App, make_small: Callable[..., TestEngine]) -> None:
    @small_app.function(id="big", trigger=TriggerEvent("go"))
    async def big(ctx: Context) -> Any:
        await ctx.step.run("small", lambda: "ok")
        await ctx.step.run("huge", lambda: "x" * 5000)

    async with make_small() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["limit"] == "step_output"
    assert "huge" in run.error["message"]
    assert [s.id for s in run.steps] == ["small"]


async def test_run_state_limit(small_app: App, make_small: Callable[..., TestEngine]) -> None:
    @small_app.function(id="state", trigger=TriggerEvent("go"))
    async def state(ctx: Context) -> Any:
        for i in range(4):
            await ctx.step.run(f"chunk{i}", lambda: "y" * 900)

    async with make_small() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["limit"] == "run_state"
    assert len(run.steps) == 3


async def test_run_state_counts_the_events_data(
    small_app: App, make_small: Callable[..., TestEngine]
) -> None:
    # 3,000 bytes: its event's data (~460 bytes encoded) and two outputs of 900 fit, a third
    # output does not (without the event's data it would)
    @small_app.function(id="state", trigger=TriggerEvent("go"))
    async def state(ctx: Context) -> Any:
        for i in range(3):
            await ctx.step.run(f"chunk{i}", lambda: "y" * 900)

    async with make_small() as t:
        run = await t.trigger(Event("go", {"blob": "z" * 450}))
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["limit"] == "run_state"
    assert [s.id for s in run.steps] == ["chunk0", "chunk1"]


async def test_oversize_event_is_rejected_and_nothing_is_stored(
    small_app: App, make_small: Callable[..., TestEngine]
) -> None:
    @small_app.function(id="any", trigger=TriggerEvent("go"))
    async def any_fn(ctx: Context) -> Any:
        return None

    async with make_small() as t:
        with pytest.raises(EventError, match="over the 500-byte event size limit"):
            await t.send(Event("go", {"blob": "z" * 1000}))
        with pytest.raises(EventError, match="not JSON-serializable"):
            await t.send(Event("go", {"when": object()}))
        assert await t.runs() == []


async def test_non_serializable_step_output_fails_clearly(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    class Opaque:
        pass

    @app.function(id="opaque", trigger=TriggerEvent("go"))
    async def opaque(ctx: Context) -> Any:
        await ctx.step.run("make-object", Opaque)

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.error is not None
    message = run.error["message"]
    assert "make-object" in message
    assert "Opaque" in message
    assert run.steps[0].attempts == 1  # not retried: it cannot succeed


async def test_non_serializable_function_result_fails_clearly(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="bad-result", trigger=TriggerEvent("go"))
    async def bad_result(ctx: Context) -> Any:
        return {1, object()}

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.error is not None
    assert "bad-result" in run.error["message"]
