"""Step semantics: memoization, repeated ids, parallel steps, sync functions, send_event."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from stepline import App, Context, Event, SyncContext, TriggerEvent
from stepline.testing import TestEngine


async def test_memo_hit_after_reentry_runs_each_step_body_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls: Counter[str] = Counter()

    @app.function(id="flow", trigger=TriggerEvent("go"))
    async def flow(ctx: Context) -> Any:
        async def fetch() -> dict[str, int]:
            calls["fetch"] += 1
            return {"n": ctx.event.data["n"]}

        first = await ctx.step.run("fetch", fetch)
        await ctx.step.sleep("pause", "1h")  # the run suspends and is re-entered
        await ctx.step.sleep("pause-again", "2d")
        return first

    async with make_engine() as t:
        run = await t.trigger(Event("go", {"n": 7}))
    assert run.status == "COMPLETED"
    assert run.output == {"n": 7}
    assert calls["fetch"] == 1
    assert [s.id for s in run.steps] == ["fetch", "pause", "pause-again"]


async def test_repeated_step_ids_get_occurrence_counters(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="repeat", trigger=TriggerEvent("go"))
    async def repeat(ctx: Context) -> Any:
        a = await ctx.step.run("fetch-data", lambda: "user")
        await ctx.step.sleep("s", 1)
        b = await ctx.step.run("fetch-data", lambda: "order")
        c = await ctx.step.run("fetch-data", lambda: "more")
        return [a, b, c]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == ["user", "order", "more"]
    assert [s.id for s in run.steps] == ["fetch-data", "s", "fetch-data:1", "fetch-data:2"]


async def test_parallel_steps_run_concurrently_and_are_each_memoized(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    running = 0
    peak = 0
    calls: Counter[str] = Counter()
    pairs = {"a": asyncio.Event(), "c": asyncio.Event()}  # a with b, c with d

    def body(name: str) -> Callable[[], Any]:
        async def run() -> str:
            nonlocal running, peak
            calls[name] += 1
            running += 1
            peak = max(peak, running)
            pair = pairs["a" if name in "ab" else "c"]
            if running == 2:
                pair.set()
            # each waits for its partner (no clock): concurrent steps are certain to overlap
            await asyncio.wait_for(pair.wait(), 10)
            running -= 1
            return name.upper()

        return run

    @app.function(id="fan-out", trigger=TriggerEvent("go"))
    async def fan_out(ctx: Context) -> Any:
        a, b = await ctx.step.parallel(("a", body("a")), ("b", body("b")))
        c, d = await asyncio.gather(ctx.step.run("c", body("c")), ctx.step.run("d", body("d")))
        await ctx.step.sleep("nap", "5m")
        return [a, b, c, d]

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == ["A", "B", "C", "D"]
    assert peak == 2
    assert set(calls.values()) == {1}


async def test_parallel_sleep_and_step_suspend_once_the_step_is_done(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls: Counter[str] = Counter()

    async def work() -> int:
        calls["work"] += 1
        return 1

    @app.function(id="mixed", trigger=TriggerEvent("go"))
    async def mixed(ctx: Context) -> Any:
        _, value = await asyncio.gather(ctx.step.sleep("wait", "1h"), ctx.step.run("work", work))
        return value

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert run.output == 1
    assert calls["work"] == 1


async def test_sync_functions_use_the_same_step_api(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls: Counter[str] = Counter()

    def double(x: int) -> int:
        calls["double"] += 1
        return x * 2

    @app.function(id="sync-fn", trigger=TriggerEvent("go"))
    def sync_fn(ctx: SyncContext) -> Any:
        first = ctx.step.run("double", double, ctx.event.data["x"])
        ctx.step.sleep("nap", "10m")
        a, b = ctx.step.parallel(("p1", lambda: 1), ("p2", lambda: 2))
        return {"first": first, "sum": a + b}

    async with make_engine() as t:
        run = await t.trigger(Event("go", {"x": 21}))
    assert run.status == "COMPLETED", run.error
    assert run.output == {"first": 42, "sum": 3}
    assert calls["double"] == 1


async def test_step_results_are_json_round_tripped(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    seen: list[Any] = []

    @app.function(id="json", trigger=TriggerEvent("go"))
    async def json_fn(ctx: Context) -> Any:
        value = await ctx.step.run("tuple", lambda: (1, 2))
        seen.append(value)
        await ctx.step.sleep("s", 1)
        return value

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
    assert seen == [[1, 2], [1, 2]]  # first pass and replay see the same value
    assert run.output == [1, 2]


async def test_send_event_triggers_another_function_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    received: list[Any] = []

    @app.function(id="producer", trigger=TriggerEvent("order/created"))
    async def producer(ctx: Context) -> Any:
        ids = await ctx.step.send_event(
            "notify", Event("order/processed", {"orderId": ctx.event.data["orderId"]})
        )
        await ctx.step.sleep("s", "1m")  # replay must not send again
        return ids

    @app.function(id="consumer", trigger=TriggerEvent("order/processed"))
    async def consumer(ctx: Context) -> Any:
        received.append(ctx.event.data)
        return ctx.event.data["orderId"]

    async with make_engine() as t:
        run = await t.trigger(Event("order/created", {"orderId": "o1"}))
        assert run.status == "COMPLETED"
        [event_id] = run.output
        [child] = await t.runs(event_id=event_id)
        child = await t.wait_for_run(child.run_id)
    assert child.function_id == "consumer"
    assert child.output == "o1"
    assert received == [{"orderId": "o1"}]


async def test_trigger_if_filter_selects_events(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="big", trigger=TriggerEvent("order", if_="event.data.amount > 100"))
    async def big(ctx: Context) -> Any:
        return ctx.event.data["amount"]

    async with make_engine() as t:
        [small] = await t.send(Event("order", {"amount": 5}))
        [missing] = await t.send(Event("order", {}))
        run = await t.trigger(Event("order", {"amount": 150}))
        assert await t.runs(event_id=small) == []
        assert await t.runs(event_id=missing) == []
    assert run.output == 150


async def test_multiple_triggers(app: App, make_engine: Callable[..., TestEngine]) -> None:
    @app.function(
        id="multi",
        triggers=[TriggerEvent("user/signup"), TriggerEvent("user/login", if_="event.data.first")],
    )
    async def multi(ctx: Context) -> Any:
        return ctx.event.name

    async with make_engine() as t:
        assert (await t.trigger(Event("user/signup"))).output == "user/signup"
        assert (await t.trigger(Event("user/login", {"first": True}))).output == "user/login"
        [ignored] = await t.send(Event("user/login", {"first": False}))
        assert await t.runs(event_id=ignored) == []


async def test_event_dedup_id_triggers_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="once", trigger=TriggerEvent("cart/checkout"))
    async def once(ctx: Context) -> Any:
        return ctx.event.id

    async with make_engine() as t:
        [first] = await t.send(Event("cart/checkout", {"cartId": 1}, id="checkout-1"))
        [second] = await t.send(Event("cart/checkout", {"cartId": 1}, id="checkout-1"))
        assert len(await t.runs(event_id=first)) == 1
        assert await t.runs(event_id=second) == []
