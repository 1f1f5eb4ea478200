"""Property (issue 6 item 5): what a step returns is what every replay returns, exactly (types
included), or the step fails with ``SerializationError``; plain JSON values are never refused."""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline import App, Context, Event, SerializationError, StepError, TriggerEvent
from stepline.serde import dumps, loads
from stepline.store import MemoryStore
from stepline.testing import MockClock, TestEngine

EXAMPLES = int(os.environ.get("STEPLINE_PROPERTY_EXAMPLES", "40"))  # scripts/soak: 500

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
lossy_scalars = st.one_of(
    st.datetimes(),
    st.dates(),
    st.uuids(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=2**64),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
    st.frozensets(st.integers(0, 3), max_size=2),
    st.sets(st.integers(0, 3), max_size=2),
    st.binary(max_size=3),
    st.decimals(allow_nan=False, places=2),
)


def _containers(children: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> Any:
    return st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)


json_values = st.recursive(
    json_scalars, lambda c: _containers(c, st.text(max_size=6)), max_leaves=20
)
any_values = st.recursive(
    json_scalars | lossy_scalars,
    lambda c: _containers(c, st.text(max_size=6) | st.integers(0, 3) | st.booleans()),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with equal types all the way down (and -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(value=any_values)
def test_encoding_gives_the_value_back_or_refuses_it(value: Any) -> None:
    try:
        data = dumps(value, "output of step 'p'")
    except SerializationError as exc:
        assert exc.what == "output of step 'p'"
        assert exc.path.startswith("$")
        assert exc.type_name
        return
    assert same(loads(data), value)


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(value=json_values)
def test_json_values_are_never_refused(value: Any) -> None:
    assert same(loads(dumps(value)), value)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=any_values)
def test_a_step_returns_on_replay_what_it_returned(value: Any) -> None:
    asyncio.run(_check(value))


async def _check(value: Any) -> None:
    app = App("serde-property")
    seen: list[Any] = []

    @app.function(id="returns", trigger=TriggerEvent("go"), retries=2)
    async def returns(ctx: Context) -> Any:
        try:
            seen.append(await ctx.step.run("value", lambda: value))
        except StepError as exc:
            return exc.error_name
        await ctx.step.sleep("nap", 1)  # the next pass replays the step
        return "replayed"

    async with TestEngine(app, store=MemoryStore(), clock=MockClock()) as t:
        run = await t.trigger(Event("go"), timeout=60)
    assert run.status == "COMPLETED", run.error
    if run.output == "SerializationError":
        assert seen == []
        assert run.steps[0].attempts == 1
        return
    assert run.output == "replayed"
    assert len(seen) == 2
    assert same(seen[0], value)
    assert same(seen[1], value)


def test_same_is_strict() -> None:
    assert not same([1], [1.0])
    assert not same({"a": 1}, {"a": True})
    assert not same(0.0, -0.0)
    with pytest.raises(AssertionError):
        assert same((1,), [1])
