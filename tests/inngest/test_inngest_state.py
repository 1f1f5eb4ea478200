"""A run's stored memo, as Stepline records it, read by the real SDKs: a native Stepline
function and the SDK apps' ``steps`` function take the same steps; the native run's state, turned
into an execution request, makes the SDK return the same output without running any step (the
memo keys and values are the SDK's own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from _driving import post

from conftest import KEY
from stepline import App, Context, Event, TriggerEvent
from stepline.drivers.inngest import (
    RunCompleted,
    SigningKeys,
    hash_step_id,
    memo_of,
    request_for,
)
from stepline.drivers.inngest._execution import fit
from stepline.drivers.inngest._state import RequestBuilder
from stepline.store.records import RunState, StepRecord
from stepline.testing import MockClock, TestEngine

# the first test of a module may install the JS SDKs (npm ci, ~40 s) and start the apps
pytestmark = pytest.mark.timeout(600)


def _native(app: App) -> None:
    @app.function(id="child", trigger=TriggerEvent("test/child"))
    async def child(ctx: Context) -> dict[str, int]:
        return {"doubled": ctx.event.data["n"] * 2}

    @app.function(id="steps", trigger=TriggerEvent("test/steps"))
    async def steps(ctx: Context) -> dict[str, Any]:
        n = ctx.event.data["n"]
        a = await ctx.step.run("a", lambda: {"n": n + 1})
        await ctx.step.sleep("nap", "2s")
        got = await ctx.step.wait_for_event(
            "wait", event="test/go", timeout="1h", if_="async.data.n == event.data.n"
        )
        p1, p2 = await ctx.step.parallel(("p1", lambda: a["n"] * 10), ("p2", lambda: a["n"] * 100))
        called = await ctx.step.invoke("call", function=child, data={"n": p1})
        await ctx.step.send_event("announce", Event("test/done", {"p2": p2}))
        return {
            "a": a,
            "waited": got.data if got is not None else None,
            "p1": p1,
            "p2": p2,
            "called": called,
        }


@pytest.mark.parametrize("kind", ["js", "js3", "py"])
async def test_a_native_runs_memo_replays_in_an_sdk(
    app: App, make_engine: Callable[..., TestEngine], start_app: Callable[..., Any], kind: str
) -> None:
    _native(app)
    clock = MockClock(autojump=False)  # the wait must not time out before its event
    async with make_engine(clock=clock) as t:
        await t.send(Event("test/steps", {"n": 2}, id="evt-1"))
        (run,) = await t.runs(function_id="steps")
        await t.wait_for_status(run.run_id, "SLEEPING")
        clock.advance(3)
        await t.wait_for_status(run.run_id, "WAITING")
        await t.send(Event("test/go", {"n": 2, "ok": True}))
        done = await t.wait_for_run(run.run_id)
        state = await t.app.engine.read(t.app.engine.store.load_run, run.run_id)
    assert state is not None
    expected = {
        "a": {"n": 3},
        "waited": {"n": 2, "ok": True},
        "p1": 30,
        "p2": 300,
        "called": {"doubled": 60},
    }
    assert done.output == expected

    request = request_for(state)
    wait = state.steps[hash_step_id("wait")]
    assert request.steps[hash_step_id("a")] == {"data": {"n": 3}}
    assert request.steps[hash_step_id("nap")] is None
    assert memo_of(wait)["data"] == {"n": 2, "ok": True}
    assert memo_of(wait)["name"] == "test/go"
    assert request.steps[hash_step_id("call")] == {"data": {"doubled": 60}}
    assert len(request.stack) == 7
    _the_drivers_bodies_are_fits(state)

    sdk = start_app(kind)
    keys = SigningKeys.parse(KEY)
    exchange = post(sdk.function_url("steps"), request, step_id="step", key=keys.current, keys=keys)
    assert exchange.reply.outcome == RunCompleted(expected)
    sent = [r for r in sdk.capture.find("/e/") if r.json()[0]["name"] == "test/done"]
    assert sent == []  # memoized: the SDK did not send the event again


def _the_drivers_bodies_are_fits(state: RunState) -> None:
    """The HTTP driver's request bodies (``RequestBuilder``: each memo and the events written
    once, then assembled) are, byte for byte, the canonical JSON of ``fit(request_for(...))``,
    whatever the options, with a failed step, text beyond ASCII and an integer past 2**53."""
    extra = {
        "f" * 40: StepRecord(
            state.run.run_id,
            "f" * 40,
            "boom",
            "run",
            90,
            "FAILED",
            error={"name": "Boom", "message": "é ☃ \u2028", "stack": "s"},
            ended_at=1e10,
        ),
        "0" * 40: StepRecord(
            state.run.run_id,
            "0" * 40,
            "big",
            "run",
            91,
            "COMPLETED",
            output_json=b'{"n": 9007199254740993, "s": "\\ud83d\\ude00"}',
            ended_at=2e10,
        ),
    }
    extended = replace(state, steps={**state.steps, **extra})
    for run_state in (state, extended):
        builder = RequestBuilder(run_state)
        for attempt, plan_only, version, checkpoint in [
            (0, False, -1, None),
            (2, True, 1, ("fn", "qi")),
            (1, False, 2, ("app-fn", "token")),
        ]:
            expected = fit(
                replace(
                    request_for(
                        run_state,
                        attempt=attempt,
                        max_attempts=4,
                        disable_immediate_execution=plan_only,
                        version=version,
                    ),
                    checkpoint=checkpoint,
                )
            )[1]
            built = builder.body(
                attempt=attempt,
                max_attempts=4,
                disable_immediate_execution=plan_only,
                version=version,
                checkpoint=checkpoint,
            )
            assert built == expected
