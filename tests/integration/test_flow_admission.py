"""Flow control decided when a run is created: idempotency, rate limit, throttle, priority,
singleton; and configuration errors that name the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stepline import (
    App,
    Concurrency,
    ConfigError,
    Context,
    Event,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    TriggerEvent,
)
from stepline.testing import MockClock, TestEngine


async def _drain(t: TestEngine, function_id: str) -> list[Any]:
    runs = await t.runs(function_id=function_id, limit=1000)
    return [await t.wait_for_run(r.run_id) for r in runs]


async def test_idempotency_one_run_per_key_per_day(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="email", trigger=TriggerEvent("cart/done"), idempotency="event.data.cartId")
    async def email(ctx: Context) -> Any:
        return ctx.event.data["cartId"]

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send([Event("cart/done", {"cartId": 1}), Event("cart/done", {"cartId": 1})])
        await t.send(Event("cart/done", {"cartId": 2}))
        assert len(await t.runs(function_id="email")) == 2
        clock.advance(24 * 3600 + 1)
        await t.send(Event("cart/done", {"cartId": 1}))
        assert len(await t.runs(function_id="email")) == 3
        skips = await t.app.skipped("email")
    assert [s.reason for s in skips] == ["idempotency"]


async def test_rate_limit_skips_events_over_the_limit(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="sync",
        trigger=TriggerEvent("company/updated"),
        rate_limit=RateLimit(limit=2, period="1h", key="event.data.companyId"),
    )
    async def sync(ctx: Context) -> Any:
        return None

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        for _ in range(3):  # limit // 10 + 1 = 1 at once for company a (issue 7)
            await t.send(Event("company/updated", {"companyId": "a"}))
        await t.send(Event("company/updated", {"companyId": "b"}))
        assert len(await t.runs(function_id="sync")) == 2
        clock.advance(1800)  # half the period: one more admission for a (GCRA)
        await t.send(Event("company/updated", {"companyId": "a"}))
        await t.send(Event("company/updated", {"companyId": "a"}))
        assert len(await t.runs(function_id="sync")) == 3
        skips = await t.app.skipped("sync")
    assert len(skips) == 3
    assert {s.reason for s in skips} == {"rate_limit"}


async def test_throttle_delays_runs_without_dropping_them(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    starts: list[float] = []

    @app.function(
        id="paced",
        trigger=TriggerEvent("job"),
        throttle=Throttle(limit=2, period="1m"),
    )
    async def paced(ctx: Context) -> Any:
        starts.append(await ctx.step.run("at", lambda: clock.now()))

    clock = MockClock()
    async with make_engine(clock=clock) as t:
        t0 = clock.now()
        await t.send([Event("job", {"i": i}) for i in range(5)])
        runs = await _drain(t, "paced")
    assert len(runs) == 5
    offsets = sorted(round(s - t0) for s in starts)
    assert offsets == [0, 0, 30, 60, 90]  # limit at once, then period / limit apart


async def test_throttle_burst_starts_several_at_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    starts: list[float] = []

    @app.function(
        id="bursty", trigger=TriggerEvent("job"), throttle=Throttle(limit=1, period=10, burst=3)
    )
    async def bursty(ctx: Context) -> Any:
        starts.append(await ctx.step.run("at", lambda: clock.now()))

    clock = MockClock()
    async with make_engine(clock=clock) as t:
        t0 = clock.now()
        await t.send([Event("job") for _ in range(5)])
        await _drain(t, "bursty")
    assert sorted(round(s - t0) for s in starts) == [0, 0, 0, 0, 10]  # limit + burst at once


async def test_priority_reorders_the_queue(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    order: list[str] = []

    @app.function(
        id="prioritized",
        trigger=TriggerEvent("task"),
        priority=Priority(run="event.data.vip ? 120 : 0"),
        concurrency=1,
    )
    async def prioritized(ctx: Context) -> Any:
        order.append(ctx.event.data["name"])

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        await t.app.pause_function("prioritized")
        await t.send(Event("task", {"name": "a", "vip": False}))
        clock.advance(10)
        await t.send(Event("task", {"name": "b", "vip": False}))
        clock.advance(10)
        await t.send(Event("task", {"name": "vip", "vip": True}))
        await t.app.resume_function("prioritized")
        await _drain(t, "prioritized")
    assert order == ["vip", "a", "b"]


async def test_singleton_skip_and_cancel(app: App, make_engine: Callable[..., TestEngine]) -> None:
    @app.function(
        id="only-one",
        trigger=TriggerEvent("sync"),
        singleton=Singleton(key="event.data.user", mode="skip"),
    )
    async def only_one(ctx: Context) -> Any:
        await ctx.step.sleep("work", "1h")

    @app.function(
        id="latest-wins",
        trigger=TriggerEvent("sync"),
        singleton=Singleton(key="event.data.user", mode="cancel"),
    )
    async def latest_wins(ctx: Context) -> Any:
        await ctx.step.sleep("work", "1h")
        return ctx.event.data["n"]

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send(Event("sync", {"user": "u1", "n": 1}))
        await t.send(Event("sync", {"user": "u1", "n": 2}))
        await t.send(Event("sync", {"user": "u2", "n": 3}))
        assert len(await t.runs(function_id="only-one")) == 2
        latest = await t.runs(function_id="latest-wins")
        statuses = sorted(r.status for r in latest)
        assert len(latest) == 3
        assert statuses.count("CANCELLED") == 1
        assert [s.reason for s in await t.app.skipped("only-one")] == ["singleton"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RateLimit(limit=0, period="1h"), "RateLimit.limit"),
        (lambda: RateLimit(limit=1, period="soon"), "RateLimit.period"),
        (lambda: Throttle(limit=1, period="1m", burst=-1), "Throttle.burst"),
        (lambda: Throttle(limit=1, period="1m", key="event.data.x =="), "Throttle.key"),
        (lambda: Singleton(mode="queue"), "Singleton.mode"),  # type: ignore[arg-type]
        (lambda: Priority(run=""), "Priority.run"),
    ],
)
def test_invalid_options_name_the_field(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build()


def _noop(ctx: Context) -> None:
    return None


def test_invalid_function_options_name_the_function(app: App) -> None:
    three = [Concurrency(1), Concurrency(2), Concurrency(3)]
    with pytest.raises(ConfigError, match=r"'bad'.*concurrency takes at most 2"):
        app.function(id="bad", concurrency=three)(_noop)
    with pytest.raises(ConfigError, match="idempotency"):
        app.function(id="bad2", idempotency="event.data.(")(_noop)


async def test_priority_does_not_jump_the_throttle(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    starts: list[float] = []

    @app.function(
        id="urgent-but-throttled",
        trigger=TriggerEvent("job"),
        throttle=Throttle(limit=1, period="1m"),
        priority=Priority(run="600"),
    )
    async def urgent(ctx: Context) -> Any:
        starts.append(await ctx.step.run("at", lambda: clock.now()))

    clock = MockClock()
    async with make_engine(clock=clock) as t:
        t0 = clock.now()
        await t.send([Event("job") for _ in range(3)])
        await _drain(t, "urgent-but-throttled")
    assert sorted(round(s - t0) for s in starts) == [0, 60, 120]
