"""Flow control while runs execute: concurrency, debounce, batching, cron, pause, replay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _polling import until

from stepline import (
    App,
    BatchEvents,
    Concurrency,
    Context,
    Debounce,
    Event,
    TriggerCron,
    TriggerEvent,
)
from stepline.testing import MockClock, TestEngine


async def _has_runs(t: TestEngine, function_id: str, count: int) -> bool:
    return len(await t.runs(function_id=function_id)) == count


async def _all_done(t: TestEngine, function_id: str) -> list[Any]:
    runs = await t.runs(function_id=function_id, limit=1000)
    return [await t.wait_for_run(r.run_id) for r in runs]


async def test_concurrency_bounds_executing_runs_per_key(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    together = {"a": asyncio.Event(), "b": asyncio.Event()}

    @app.function(
        id="limited",
        trigger=TriggerEvent("job"),
        concurrency=[Concurrency(limit=2, key="event.data.user")],
    )
    async def limited(ctx: Context) -> Any:
        user = ctx.event.data["user"]

        async def work() -> None:
            running[user] = running.get(user, 0) + 1
            peak[user] = max(peak.get(user, 0), running[user])
            if running[user] == 2:
                together[user].set()
            # the first run of a key waits for a second (no clock): the overlap is certain
            await asyncio.wait_for(together[user].wait(), 10)
            running[user] -= 1

        await ctx.step.run("work", work)

    async with make_engine() as t:
        events = [Event("job", {"user": u}) for u in ("a", "b") for _ in range(5)]
        await t.send(events)
        done = await _all_done(t, "limited")
    assert [r.status for r in done] == ["COMPLETED"] * 10
    assert peak == {"a": 2, "b": 2}


async def test_sleeping_runs_hold_no_concurrency_slot(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="sleepers", trigger=TriggerEvent("job"), concurrency=1)
    async def sleepers(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send([Event("job") for _ in range(3)])
        for run in await t.runs(function_id="sleepers"):
            await t.wait_for_status(run.run_id, "SLEEPING")


async def test_debounce_runs_once_with_the_last_event(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="debounced",
        trigger=TriggerEvent("typed"),
        debounce=Debounce(period="5m", key="event.data.doc"),
    )
    async def debounced(ctx: Context) -> Any:
        return ctx.event.data["text"]

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        for text in ("h", "he", "hel"):
            await t.send(Event("typed", {"doc": 1, "text": text}))
            clock.advance(60)
        await t.send(Event("typed", {"doc": 2, "text": "other"}))
        assert await t.runs(function_id="debounced") == []
        clock.advance(301)
        await t.tick()
        done = await _all_done(t, "debounced")
        assert len(done) == 2
    assert sorted(r.output for r in done) == ["hel", "other"]


async def test_debounce_timeout_caps_the_delay(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="capped", trigger=TriggerEvent("ping"), debounce=Debounce(period="1m", timeout="3m")
    )
    async def capped(ctx: Context) -> Any:
        return ctx.event.data["n"]

    clock = MockClock(autojump=False)
    async with make_engine(clock=clock) as t:
        for n in range(10):  # an event every 30 s for 5 minutes: never quiet for 1 m
            await t.send(Event("ping", {"n": n}))
            clock.advance(30)
            await t.tick()  # the worker looks at every 30 s mark (as a real one would)
        [run] = await _all_done(t, "capped")
    # the cap fired at 3:00 with the last event received before it (sent at 2:30); the events
    # from 3:00 on started a new debounce that has not fired yet
    assert run.output == 5


async def test_batch_events_by_size_and_by_timeout(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="batched",
        trigger=TriggerEvent("item"),
        batch_events=BatchEvents(max_size=3, timeout="10s"),
    )
    async def batched(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    async with make_engine() as t:
        await t.send([Event("item", {"i": i}) for i in range(5)])
        await until("two batches", lambda: _has_runs(t, "batched", 2))
        done = await _all_done(t, "batched")
    assert sorted(r.output for r in done) == [[0, 1, 2], [3, 4]]


async def test_cron_fires_once_per_tick_in_its_timezone(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="weekly", trigger=TriggerCron("TZ=Europe/Paris 0 12 * * 5"))
    async def weekly(ctx: Context) -> Any:
        return ctx.event.data["cron"]

    start = datetime(2026, 3, 26, 0, 0, tzinfo=UTC).timestamp()  # a Thursday
    clock = MockClock(start=start, autojump=False)
    async with make_engine(clock=clock) as t:  # the worker has registered the schedule
        clock.set(datetime(2026, 3, 27, 11, 0, 1, tzinfo=UTC).timestamp())  # Fri 12:00 CET
        await t.tick()
        assert len(await t.runs(function_id="weekly")) == 1
        clock.set(datetime(2026, 4, 3, 10, 0, 1, tzinfo=UTC).timestamp())  # Fri 12:00 CEST
        await t.tick()
        done = await _all_done(t, "weekly")
        events = await t.app.engine.read(
            t.app.engine.store.get_events, [e for r in done for e in r.event_ids]
        )
    assert len(done) == 2
    fired = sorted(datetime.fromtimestamp(e.ts, UTC) for e in events)
    assert fired == [
        datetime(2026, 3, 27, 11, 0, tzinfo=UTC),
        datetime(2026, 4, 3, 10, 0, tzinfo=UTC),
    ]


async def test_cron_catches_up_once_after_downtime(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="hourly", trigger=TriggerCron("0 * * * *"))
    async def hourly(ctx: Context) -> Any:
        return None

    start = datetime(2026, 5, 1, 0, 30, tzinfo=UTC).timestamp()
    clock = MockClock(start=start, autojump=False)
    async with make_engine(clock=clock) as t:
        clock.set(start + 10 * 3600)  # ten ticks missed
        await t.tick()
        await t.tick()
        assert len(await t.runs(function_id="hourly")) == 1


async def test_paused_functions_hold_runs_until_resumed(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="pausable", trigger=TriggerEvent("job"))
    async def pausable(ctx: Context) -> Any:
        return ctx.event.data["n"]

    async with make_engine() as t:
        await t.app.pause_function("pausable")
        await t.send([Event("job", {"n": n}) for n in range(3)])
        await t.tick()  # the worker looked, and held them
        assert {r.status for r in await t.runs(function_id="pausable")} == {"QUEUED"}
        await t.app.resume_function("pausable")
        done = await _all_done(t, "pausable")
    assert sorted(r.output for r in done) == [0, 1, 2]


async def test_replay_from_start_and_from_a_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    calls: dict[str, int] = {"a": 0, "b": 0}
    fail = {"b": True}

    @app.function(id="replayable", trigger=TriggerEvent("go"), retries=0)
    async def replayable(ctx: Context) -> Any:
        def step_a() -> str:
            calls["a"] += 1
            return "a"

        def step_b() -> str:
            calls["b"] += 1
            if fail["b"]:
                raise RuntimeError("b broke")
            return "b"

        return [await ctx.step.run("a", step_a), await ctx.step.run("b", step_b)]

    async with make_engine() as t:
        failed = await t.trigger(Event("go"))
        assert failed.status == "FAILED"
        fail["b"] = False
        from_b = await t.wait_for_run(await t.app.replay_run(failed.run_id, from_step="b"))
        assert from_b.output == ["a", "b"]
        assert calls == {"a": 1, "b": 2}
        again = await t.wait_for_run(await t.app.replay_run(failed.run_id))
    assert again.output == ["a", "b"]
    assert calls == {"a": 2, "b": 3}
