"""Limits with Checkpointing: a run's state is counted once per step output, buffered or not,
and a breach keeps what earlier rounds buffered (those steps ran and their results were given
to the function): the same outcome with and without ``Checkpointing``. Before (review,
twentieth stop): each buffered output was counted again at every round until its group
committed (6 steps of 900 bytes failed a 6,000-byte limit with ``buffered_steps=3``, "state
would be 6316 bytes"), and a breach dropped the whole buffered group (none of the steps that
ran was recorded; a step output over its limit dropped it too)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Checkpointing, Context, Event, Limits, TriggerEvent
from stepline.testing import TestEngine

OUTPUT = "y" * 900  # 902 bytes of JSON a step


def _function(app: App, steps: int, buffered: int | None, calls: Counter[str]) -> None:
    checkpointing = (
        None if buffered is None else Checkpointing(buffered_steps=buffered, max_interval="1h")
    )

    @app.function(id="f", trigger=TriggerEvent("go"), checkpointing=checkpointing)
    async def f(ctx: Context) -> Any:
        for i in range(steps):

            def body(name: str = f"s{i}") -> str:
                calls[name] += 1
                return OUTPUT

            await ctx.step.run(f"s{i}", body)
        return "done"


@pytest.mark.parametrize("buffered", [None, 3, 10], ids=["none", "groups-of-3", "groups-of-10"])
async def test_a_run_within_its_state_limit_completes_whatever_its_checkpointing(
    app: App, make_engine: Callable[..., TestEngine], buffered: int | None
) -> None:
    app.limits = Limits(max_run_state_bytes=6_000)  # 6 outputs: 5,412 bytes
    calls: Counter[str] = Counter()
    _function(app, 6, buffered, calls)
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED", run.error
    assert [s.id for s in run.steps] == [f"s{i}" for i in range(6)]
    assert set(calls.values()) == {1}


@pytest.mark.parametrize("buffered", [None, 3, 10], ids=["none", "groups-of-3", "groups-of-10"])
async def test_a_state_limit_breached_keeps_the_steps_that_ran_before_it(
    app: App, make_engine: Callable[..., TestEngine], buffered: int | None
) -> None:
    app.limits = Limits(max_run_state_bytes=3_000)  # 3 outputs fit, the 4th breaches it
    calls: Counter[str] = Counter()
    _function(app, 7, buffered, calls)
    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED" and run.error is not None
    assert run.error["limit"] == "run_state"
    assert [(s.id, s.status) for s in run.steps] == [(f"s{i}", "COMPLETED") for i in range(3)]
    assert calls == Counter({"s0": 1, "s1": 1, "s2": 1, "s3": 1})


@pytest.mark.parametrize("buffered", [None, 3, 10], ids=["none", "groups-of-3", "groups-of-10"])
async def test_a_step_output_over_its_limit_keeps_the_steps_buffered_before_it(
    app: App, make_engine: Callable[..., TestEngine], buffered: int | None
) -> None:
    app.limits = Limits(max_step_output_bytes=1_000)  # the third step's output breaches it
    calls: Counter[str] = Counter()
    checkpointing = (
        None if buffered is None else Checkpointing(buffered_steps=buffered, max_interval="1h")
    )

    @app.function(id="f", trigger=TriggerEvent("go"), checkpointing=checkpointing)
    async def f(ctx: Context) -> Any:
        for i in range(4):

            def body(name: str = f"s{i}", size: int = 2_000 if i == 2 else 900) -> str:
                calls[name] += 1
                return "y" * size

            await ctx.step.run(f"s{i}", body)
        return "done"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED" and run.error is not None
    assert run.error["limit"] == "step_output"
    assert [(s.id, s.status) for s in run.steps] == [("s0", "COMPLETED"), ("s1", "COMPLETED")]
    assert calls == Counter({"s0": 1, "s1": 1, "s2": 1})
