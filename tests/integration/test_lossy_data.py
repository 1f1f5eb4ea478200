"""Values JSON cannot give back are refused, never converted: step outputs, function results,
event data, invoke data and sent events. The error names where, the path inside the value and
the type (issue 6 item 5)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from stepline import App, Context, Event, EventError, SerializationError, TriggerEvent
from stepline.testing import TestEngine

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

# (value, path, type named in the error)
LOSSY: list[tuple[Any, str, str]] = [
    ({"items": [{}, {}, {"at": AT}]}, "$.items[2].at", "datetime.datetime"),
    ({"user": {"id": ID}}, "$.user.id", "uuid.UUID"),
    ({"tags": {"a", "b"}}, "$.tags", "set"),
    ({"score": math.nan}, "$.score", "float"),
    ({"scores": [1.0, math.inf]}, "$.scores[1]", "float"),
    ({"by_id": {1: "one"}}, "$.by_id", "dict key of type int"),
]
IDS = ["datetime", "uuid", "set", "nan", "inf", "int-key"]


@pytest.mark.parametrize(("value", "path", "type_name"), LOSSY, ids=IDS)
async def test_lossy_step_output_fails_the_step_naming_path_and_type(
    app: App, make_engine: Callable[..., TestEngine], value: Any, path: str, type_name: str
) -> None:
    # issue 6 item 5: NaN became null, a datetime a string, a set a list, {1: ...} {"1": ...}
    seen: list[Any] = []

    @app.function(id="lossy-step", trigger=TriggerEvent("go"), retries=3)
    async def lossy_step(ctx: Context) -> Any:
        seen.append(await ctx.step.run("fetch", lambda: value))
        return "unreachable"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert seen == []  # the function never received a changed value
    assert run.status == "FAILED"
    [step] = run.steps
    assert step.status == "FAILED"
    assert step.attempts == 1  # not retried: it cannot succeed
    assert step.error is not None
    assert step.error["name"] == "SerializationError"
    message = step.error["message"]
    assert "'fetch'" in message
    assert f"{type_name} at {path}" in message


@pytest.mark.parametrize(("value", "path", "type_name"), LOSSY, ids=IDS)
async def test_lossy_function_result_fails_the_run_naming_path_and_type(
    app: App, make_engine: Callable[..., TestEngine], value: Any, path: str, type_name: str
) -> None:
    # issue 6 item 5
    @app.function(id="lossy-result", trigger=TriggerEvent("go"))
    async def lossy_result(ctx: Context) -> Any:
        return value

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "FAILED"
    assert run.output is None
    assert run.error is not None
    assert run.error["name"] == "SerializationError"
    assert "'lossy-result'" in run.error["message"]
    assert f"{type_name} at {path}" in run.error["message"]


@pytest.mark.parametrize(("value", "path", "type_name"), LOSSY, ids=IDS)
async def test_lossy_event_data_is_refused_at_send(
    app: App, make_engine: Callable[..., TestEngine], value: Any, path: str, type_name: str
) -> None:
    # issue 6 item 5
    @app.function(id="any", trigger=TriggerEvent("go"))
    async def any_fn(ctx: Context) -> Any:
        return None

    async with make_engine() as t:
        with pytest.raises(EventError) as refused:
            await t.send(Event("go", {"order": value}))
        assert await t.runs() == []
    cause = refused.value.__cause__
    assert isinstance(cause, SerializationError)
    assert "event 'go'" in str(refused.value)
    assert (cause.path, cause.type_name) == ("$.order" + path[1:], type_name)


async def test_lossy_invoke_data_raises_at_the_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 5: the error reaches the user's code at the invoke, naming the step
    @app.function(id="child", trigger=TriggerEvent("child"))
    async def child(ctx: Context) -> Any:
        return ctx.event.data

    @app.function(id="parent", trigger=TriggerEvent("go"))
    async def parent(ctx: Context) -> Any:
        try:
            await ctx.step.invoke("call-child", function=child, data={"at": AT})
        except SerializationError as exc:
            return [exc.what, exc.path, exc.type_name]
        return "unreachable"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED", run.error
    assert run.output == ["data of step.invoke 'call-child'", "$.at", "datetime.datetime"]


async def test_lossy_sent_event_raises_at_the_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 5
    @app.function(id="sender", trigger=TriggerEvent("go"))
    async def sender(ctx: Context) -> Any:
        try:
            await ctx.step.send_event("notify", [Event("a"), Event("b", {"ids": {ID}})])
        except SerializationError as exc:
            return [exc.what, exc.path, exc.type_name]
        return "unreachable"

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED", run.error
    assert run.output == ["data of event 'b' in step.send_event 'notify'", "$.ids", "set"]


async def test_json_values_and_documented_conversions_are_kept(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 5: what JSON gives back exactly passes; tuples become lists on every pass
    value = {"n": 1, "f": -0.5, "big": 2**63, "s": "é", "none": None, "ok": True, "l": [[], {}]}
    seen: list[Any] = []

    @app.function(id="kept", trigger=TriggerEvent("go"))
    async def kept(ctx: Context) -> Any:
        seen.append(await ctx.step.run("value", lambda: value))
        seen.append(await ctx.step.run("pair", lambda: (1, "a")))
        await ctx.step.sleep("nap", 1)  # the next pass replays both
        return seen[-2:]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.status == "COMPLETED", run.error
    assert seen == [value, [1, "a"], value, [1, "a"]]
    assert run.output == [value, [1, "a"]]
