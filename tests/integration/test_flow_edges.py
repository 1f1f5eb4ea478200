"""Flow-control edges: exact counts, ordering and boundaries of every option, on both stores
with virtual time; and invalid configurations rejected with messages naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from _polling import until

from stepline import (
    App,
    BatchEvents,
    CancelOn,
    Concurrency,
    ConfigError,
    Context,
    Debounce,
    Event,
    RateLimit,
    Run,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from stepline.testing import MockClock, TestEngine

Make = Callable[..., TestEngine]
T0 = 1_700_000_000.0  # a whole second: T0 + offset is exact for the offsets used here
CANCELLED = "inngest/function.cancelled"


async def runs_of(t: TestEngine, function_id: str, count: int) -> list[Run]:
    """The function's runs by id, once there are ``count`` of them."""

    async def found() -> list[Run] | None:
        runs = await t.runs(function_id=function_id, limit=1000)
        return sorted(runs, key=lambda r: r.run_id) if len(runs) == count else None

    result: list[Run] = await until(f"{count} runs of {function_id}", found)
    return result


async def ended(t: TestEngine, function_id: str, count: int) -> list[Run]:
    return [await t.wait_for_run(r.run_id) for r in await runs_of(t, function_id, count)]


async def sleeping_run(t: TestEngine, event: Event) -> Run:
    """Send an event that starts one run; return the run once it sleeps."""
    [event_id] = await t.send(event)
    [run] = await t.runs(event_id=event_id)
    return await t.wait_for_status(run.run_id, "SLEEPING")


def move(t: TestEngine, clock: MockClock, at: float) -> None:
    clock.set(at)
    assert t.worker is not None
    t.worker.wake()


# -- admission ------------------------------------------------------------------------------------
async def test_rate_limit_admits_exactly_at_the_period_edge(app: App, make_engine: Make) -> None:
    @app.function(id="rl", trigger=TriggerEvent("ping"), rate_limit=RateLimit(1, "1m"))
    async def rl(ctx: Context) -> Any:
        return None

    clock = MockClock(start=T0, autojump=False)
    admitted = []
    async with make_engine(clock=clock) as t:
        for offset in (0, 59.999, 60, 60.001, 119.999, 120):
            clock.set(T0 + offset)
            [event_id] = await t.send(Event("ping", {"at": offset}))
            if await t.runs(event_id=event_id):
                admitted.append(offset)
        skips = await t.app.skipped("rl")
    assert admitted == [0, 60, 120]
    assert [s.reason for s in skips] == ["rate_limit"] * 3


async def test_throttle_keys_are_independent_and_delayed_runs_keep_their_order(
    app: App, make_engine: Make
) -> None:
    starts: list[tuple[str, str, float]] = []

    @app.function(
        id="paced", trigger=TriggerEvent("job"), throttle=Throttle(1, "10s", key="event.data.k")
    )
    async def paced(ctx: Context) -> Any:
        at = await ctx.step.run("at", clock.now)
        starts.append((ctx.event.data["k"], ctx.event.data["n"], at - T0))

    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        await t.send([Event("job", {"k": k, "n": n}) for k, n in ("a0", "a1", "a2", "b0", "b1")])
        await ended(t, "paced", 5)
        assert await t.app.skipped("paced") == []
    by_key = {
        k: [(n, at) for kk, n, at in sorted(starts, key=lambda s: s[2]) if kk == k] for k in "ab"
    }
    assert by_key == {"a": [("0", 0), ("1", 10), ("2", 20)], "b": [("0", 0), ("1", 10)]}


async def test_idempotency_key_concatenation_keeps_the_present_fields(
    app: App, make_engine: Make
) -> None:
    # issue 7: `+` with a missing operand gives the other operand, as in Inngest's server
    # (inngest/inngest pkg/expressions/unknown.go, handleUnknownCall): "u1" + "-" + missing is
    # "u1-", not a failed (null) key shared by every event missing a field.
    @app.function(
        id="once",
        trigger=TriggerEvent("signup"),
        idempotency='event.data.userId + "-" + event.data.orgId',
    )
    async def once(ctx: Context) -> Any:
        return None

    data = [
        {"userId": "u1", "orgId": "o1"},
        {"userId": "u1", "orgId": "o1"},  # same key: skipped
        {"userId": "u1", "orgId": "o2"},
        {"userId": "u2", "orgId": "o1"},
        {"userId": "u1"},  # key "u1-"
        {"orgId": "o1"},  # key "-o1"
        {},  # key "-"
        {"userId": "u1"},  # "u1-" again: skipped
    ]
    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        ids = await t.send([Event("signup", d) for d in data])
        started = [i for i, event_id in enumerate(ids) if await t.runs(event_id=event_id)]
        skips = await t.app.skipped("once")
    assert started == [0, 2, 3, 4, 5, 6]
    assert sorted(s.event_id for s in skips) == sorted(ids[i] for i in (1, 7))
    assert {s.reason for s in skips} == {"idempotency"}


async def test_singleton_cancel_emits_the_cancelled_event(app: App, make_engine: Make) -> None:
    seen: list[dict[str, Any]] = []

    @app.function(
        id="latest", trigger=TriggerEvent("sync"), singleton=Singleton("event.data.u", "cancel")
    )
    async def latest(ctx: Context) -> Any:
        await ctx.step.sleep("work", "1h")

    @app.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
    async def cleanup(ctx: Context) -> Any:
        seen.append(dict(ctx.event.data))

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        first = await sleeping_run(t, Event("sync", {"u": "u1"}))
        await sleeping_run(t, Event("sync", {"u": "u1"}))
        assert (await t.wait_for_run(first.run_id)).status == "CANCELLED"
        await ended(t, "cleanup", 1)
    assert [(s["run_id"], s["function_id"]) for s in seen] == [(first.run_id, "latest")]


# -- concurrency ----------------------------------------------------------------------------------
def tracker(
    inside: dict[str, int], peak: dict[str, int], key: str, together: asyncio.Event, needed: int
) -> Callable[[], Any]:
    """A step body that records how many run at once; the first ones wait (no clock involved)
    until ``needed`` are inside together, so the overlap the limits allow is certain to happen."""

    async def work() -> None:
        inside[key] = inside.get(key, 0) + 1
        peak[key] = max(peak.get(key, 0), inside[key])
        peak["*"] = max(peak.get("*", 0), sum(inside.values()))
        if sum(inside.values()) >= needed:
            together.set()
        await asyncio.wait_for(together.wait(), 10)
        inside[key] -= 1

    return work


async def test_concurrency_is_fair_across_keys(app: App, make_engine: Make) -> None:
    order: list[str] = []

    @app.function(
        id="fair", trigger=TriggerEvent("job"), concurrency=Concurrency(1, "event.data.k")
    )
    async def fair(ctx: Context) -> Any:
        order.append(await ctx.step.run("start", lambda: ctx.event.data["k"]))
        await ctx.step.run("work", gate.wait)  # A's first run holds its key's slot till B starts

    gate = asyncio.Event()
    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        try:
            await t.send([Event("job", {"k": "A"}) for _ in range(20)])
            clock.advance(1)  # B's run is queued after A's whole backlog
            await t.send(Event("job", {"k": "B"}))
            await until("B's run to start", lambda: "B" in order)
        finally:
            gate.set()
        await ended(t, "fair", 21)
    assert order.count("A") == 20
    assert order.index("B") <= 1, order  # it started alongside A's first run


async def test_app_scoped_concurrency_is_shared_by_functions_with_the_same_key(
    app: App, make_engine: Make
) -> None:
    inside: dict[str, int] = {}
    peaks: dict[str, dict[str, int]] = {"app": {}, "fn": {}}
    together = {"app": asyncio.Event(), "fn": asyncio.Event()}
    needed = {"app": 2, "fn": 4}  # what each scope allows at once: 2 accounts (x 2 functions)

    for scope in ("app", "fn"):
        for name in ("x", "y"):
            limit = Concurrency(1, key="event.data.acct", scope=scope)

            @app.function(id=f"{scope}-{name}", trigger=TriggerEvent(scope), concurrency=limit)
            async def body(ctx: Context, scope: str = scope) -> Any:
                key = f"{scope}-{ctx.event.data['acct']}"
                work = tracker(inside, peaks[scope], key, together[scope], needed[scope])
                await ctx.step.run("work", work)

    async with make_engine() as t:
        for scope in ("app", "fn"):
            await t.send([Event(scope, {"acct": acct}) for acct in "aabb"])
            await ended(t, f"{scope}-x", 4)
            await ended(t, f"{scope}-y", 4)
    # app scope: one slot per account across both functions; both accounts ran at once
    assert peaks["app"] == {"app-a": 1, "app-b": 1, "*": 2}
    # fn scope: each function has its own slot per account
    assert peaks["fn"]["fn-a"] == 2 and peaks["fn"]["fn-b"] == 2


async def test_concurrency_limit_two_starts_a_second_run_while_one_executes(
    app: App, make_engine: Make, store_kind: str, request: Any
) -> None:
    inside = {"n": 0, "peak": 0}
    gate = asyncio.Event()

    @app.function(id="two", trigger=TriggerEvent("job"), concurrency=2)
    async def two(ctx: Context) -> Any:
        async def work() -> None:
            inside["n"] += 1
            inside["peak"] = max(inside["peak"], inside["n"])
            await gate.wait()
            inside["n"] -= 1

        await ctx.step.run("work", work)

    async with make_engine() as t:
        try:
            await t.send(Event("job"))
            await until("the first run to execute", lambda: inside["n"] == 1)
            await t.send([Event("job"), Event("job")])  # limit and limit + 1
            await until("a second run to execute", lambda: inside["n"] == 2, timeout=3)
        finally:
            gate.set()
        await ended(t, "two", 3)
    assert inside["peak"] == 2  # the third run (limit + 1) waited for a slot


# -- debounce and batches -------------------------------------------------------------------------
async def test_debounce_keys_are_independent(app: App, make_engine: Make) -> None:
    @app.function(
        id="deb", trigger=TriggerEvent("typed"), debounce=Debounce("1m", key="event.data.doc")
    )
    async def deb(ctx: Context) -> Any:
        return ctx.event.data["text"]

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send(Event("typed", {"doc": 1, "text": "a1"}))
        clock.set(T0 + 30)
        await t.send(Event("typed", {"doc": 2, "text": "b1"}))
        clock.set(T0 + 50)
        await t.send(Event("typed", {"doc": 1, "text": "a2"}))  # doc 1 now due at T0 + 110
        move(t, clock, T0 + 90)  # doc 2 is due (30 + 60); doc 1 is not
        [first] = await ended(t, "deb", 1)
        assert first.output == "b1"
        move(t, clock, T0 + 110)
        runs = await ended(t, "deb", 2)
    assert sorted(r.output for r in runs) == ["a2", "b1"]


async def test_batch_by_key_with_a_filter(app: App, make_engine: Make) -> None:
    @app.function(
        id="batched",
        trigger=TriggerEvent("item"),
        batch_events=BatchEvents(3, "10s", key="event.data.k", if_="event.data.ok == true"),
    )
    async def batched(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    clock = MockClock(start=T0, autojump=False)
    items = [("a", 1, True), ("b", 2, True), ("a", 3, True), ("a", 4, False), ("a", 5, True)]
    async with make_engine(clock=clock) as t:
        ids = await t.send([Event("item", {"k": k, "i": i, "ok": ok}) for k, i, ok in items])
        await t.send(Event("item", {"k": "b", "i": 6, "ok": True}))
        # a's batch filled up, and the filtered event runs on its own: no wait for either
        first = await ended(t, "batched", 2)
        assert sorted(r.output for r in first) == [[1, 3, 5], [4]]
        [alone] = await t.runs(event_id=ids[3])
        assert alone.event_ids == [ids[3]]
        move(t, clock, T0 + 10)  # b's batch times out 10 s after its first event
        runs = await ended(t, "batched", 3)
    assert sorted(r.output for r in runs) == [[1, 3, 5], [2, 6], [4]]


async def test_batch_of_one_starts_every_event_at_once(app: App, make_engine: Make) -> None:
    @app.function(id="single", trigger=TriggerEvent("item"), batch_events=BatchEvents(1, "1h"))
    async def single(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        ids = await t.send([Event("item", {"i": i}) for i in range(3)])
        assert [len(await t.runs(event_id=e)) for e in ids] == [1, 1, 1]  # no time passed
        runs = await ended(t, "single", 3)
    assert sorted(r.output for r in runs) == [[0], [1], [2]]


# -- cancellation, timeouts, pause, replay --------------------------------------------------------
async def test_cancel_on_match_shorthand_until_its_timeout(app: App, make_engine: Make) -> None:
    @app.function(
        id="order",
        trigger=TriggerEvent("order/created"),
        cancel_on=[CancelOn("order/cancelled", match="data.orderId", timeout="10m")],
    )
    async def order(ctx: Context) -> Any:
        await ctx.step.sleep("wait", "1h")
        return ctx.event.data["orderId"]

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        ids = await t.send([Event("order/created", {"orderId": o}) for o in ("o1", "o2")])
        [r1], [r2] = [await t.runs(event_id=event_id) for event_id in ids]
        for run in (r1, r2):  # asleep until T0 + 1h before time moves
            await t.wait_for_status(run.run_id, "SLEEPING")
        await t.send(Event("order/cancelled", {"orderId": "o9"}))  # matches neither
        clock.set(T0 + 600)  # the last instant within the timeout
        await t.send(Event("order/cancelled", {"orderId": "o1"}))
        assert (await t.wait_for_run(r1.run_id)).status == "CANCELLED"
        clock.set(T0 + 600.0625)  # past it: the matcher no longer cancels
        await t.send(Event("order/cancelled", {"orderId": "o2"}))
        move(t, clock, T0 + 3600)
        assert (await t.wait_for_run(r2.run_id)).output == "o2"


async def test_start_timeout_boundary(app: App, make_engine: Make) -> None:
    @app.function(id="prompt", trigger=TriggerEvent("go"), timeouts=Timeouts(start="5m"))
    async def prompt(ctx: Context) -> Any:
        return "ran"

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.app.pause_function("prompt")
        [late] = await t.send(Event("go"))
        clock.set(T0 + 0.0625)
        [on_time] = await t.send(Event("go"))
        clock.set(T0 + 300.0625)  # exactly 5 minutes after on_time, just over for late
        await t.app.resume_function("prompt")
        [late_run] = await t.runs(event_id=late)
        [on_time_run] = await t.runs(event_id=on_time)
        late_end = await t.wait_for_run(late_run.run_id)
        assert (await t.wait_for_run(on_time_run.run_id)).output == "ran"
    assert late_end.status == "CANCELLED"
    assert late_end.error is not None and "timeouts.start" in late_end.error["message"]


@pytest.mark.parametrize(
    "same_instant",
    [None, True],
    ids=["1ms-apart", "same-ms"],
)
async def test_pause_and_resume_keep_fifo_order(
    app: App, make_engine: Make, same_instant: bool | None
) -> None:
    order: list[int] = []

    @app.function(id="fifo", trigger=TriggerEvent("job"), concurrency=1)
    async def fifo(ctx: Context) -> Any:
        await ctx.step.run("record", order.append, ctx.event.data["n"])

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.app.pause_function("fifo")
        for n in range(12):
            if same_instant is None:
                clock.advance(0.001)
            await t.send(Event("job", {"n": n}))
        assert {r.status for r in await runs_of(t, "fifo", 12)} == {"QUEUED"}
        await t.app.resume_function("fifo")
        await ended(t, "fifo", 12)
    assert order == list(range(12))


async def test_replay_of_a_cancelled_run(app: App, make_engine: Make) -> None:
    @app.function(id="again", trigger=TriggerEvent("go"))
    async def again(ctx: Context) -> Any:
        n = await ctx.step.run("read", lambda: ctx.event.data["n"])
        await ctx.step.sleep("nap", "1h")
        return n * 2

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        original = await sleeping_run(t, Event("go", {"n": 21}))
        assert await t.app.cancel_run(original.run_id)
        assert not await t.app.cancel_run(original.run_id)  # already ended
        replay_id = await t.app.replay_run(original.run_id)
        await t.wait_for_status(replay_id, "SLEEPING")
        move(t, clock, T0 + 3600)
        replayed = await t.wait_for_run(replay_id)
        history = [h.kind for h in await t.history(replay_id)]
        assert (await t.app.get_run(original.run_id)).status == "CANCELLED"  # type: ignore[union-attr]
    assert (replayed.status, replayed.output) == ("COMPLETED", 42)
    assert replayed.event_ids == original.event_ids
    assert "RUN_REPLAYED" in history


async def test_a_replayed_run_keeps_the_functions_cancel_on(app: App, make_engine: Make) -> None:
    @app.function(
        id="stoppable", trigger=TriggerEvent("go"), cancel_on=[CancelOn("stop", match="data.id")]
    )
    async def stoppable(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        original = await sleeping_run(t, Event("go", {"id": 1}))
        await t.app.cancel_run(original.run_id)
        replay_id = await t.app.replay_run(original.run_id)
        await t.wait_for_status(replay_id, "SLEEPING")
        await t.send(Event("stop", {"id": 1}))
        assert (await t.wait_for_run(replay_id, timeout=3)).status == "CANCELLED"


async def test_bulk_cancel_time_range_bounds_and_the_cancelled_event(
    app: App, make_engine: Make
) -> None:
    cleaned: list[tuple[str, str]] = []

    for function_id in ("many", "other"):

        @app.function(id=function_id, trigger=TriggerEvent("go"))
        async def sleeper(ctx: Context) -> Any:
            await ctx.step.sleep("wait", "1d")

    @app.function(
        id="cleanup", trigger=TriggerEvent(CANCELLED, if_='event.data.function_id == "many"')
    )
    async def cleanup(ctx: Context) -> Any:
        cleaned.append((ctx.event.data["run_id"], ctx.event.data["function_id"]))

    def at(offset: float) -> datetime:
        return datetime.fromtimestamp(T0 + offset, UTC)

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        created: dict[int, str] = {}
        for offset in (0, 10, 20, 30):
            clock.set(T0 + offset)
            [event_id] = await t.send(Event("go"))
            runs = await t.runs(event_id=event_id, function_id="many")
            created[offset] = runs[0].run_id
        for run in await runs_of(t, "many", 4) + await runs_of(t, "other", 4):
            await t.wait_for_status(run.run_id, "SLEEPING")
        # both bounds are inclusive
        middle = await t.app.cancel_runs("many", started_after=at(10), started_before=at(20))
        assert sorted(middle) == sorted([created[10], created[20]])
        assert await t.app.cancel_runs("many", started_after=at(30)) == [created[30]]
        assert await t.app.cancel_runs("many", started_before=at(-0.0625)) == []
        assert await t.app.cancel_runs("many") == [created[0]]
        statuses = {(r.function_id, r.status) for r in await t.runs(limit=100)}
        t.worker.wake()  # type: ignore[union-attr]
        await ended(t, "cleanup", 4)
    assert {s for s in statuses if s[0] != "cleanup"} == {
        ("many", "CANCELLED"),
        ("other", "SLEEPING"),
    }
    assert sorted(cleaned) == sorted((run_id, "many") for run_id in created.values())


async def test_api_cancellation_starts_the_cleanup_function_at_once(
    app: App, make_engine: Make
) -> None:
    @app.function(id="sleeper", trigger=TriggerEvent("go"))
    async def sleeper(ctx: Context) -> Any:
        await ctx.step.sleep("wait", "1d")

    @app.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
    async def cleanup(ctx: Context) -> Any:
        return ctx.event.data["run_id"]

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        run = await sleeping_run(t, Event("go"))
        assert await t.app.cancel_run(run.run_id)
        [cleanup_run] = await runs_of(t, "cleanup", 1)
        assert (await t.wait_for_run(cleanup_run.run_id, timeout=2)).output == run.run_id


# -- invalid configurations -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Concurrency(limit=0), r"Concurrency\.limit"),
        (lambda: Concurrency(limit=True), r"Concurrency\.limit"),
        (lambda: Concurrency(limit=2**31), r"Concurrency\.limit must be at most 2147483647"),
        (lambda: Concurrency(limit=2, scope="env"), r"Concurrency\.scope"),  # type: ignore[arg-type]
        (lambda: Concurrency(limit=2, key="event.data.("), r"Concurrency\.key"),
        (lambda: Debounce(period="soon"), r"Debounce\.period"),
        (lambda: Debounce(period=0), r"Debounce\.period"),
        (lambda: Debounce(period="1m", timeout="30s"), r"Debounce\.timeout"),
        (lambda: BatchEvents(max_size=1001, timeout="1s"), r"BatchEvents\.max_size.*1000"),
        (lambda: BatchEvents(max_size=0, timeout="1s"), r"BatchEvents\.max_size"),
        (lambda: BatchEvents(max_size=10, timeout="2h"), r"BatchEvents\.timeout"),
        (lambda: BatchEvents(max_size=10, timeout=None), r"BatchEvents\.timeout"),  # type: ignore[arg-type]
        (lambda: BatchEvents(max_size=10, timeout="1s", if_="event.data =="), r"BatchEvents\.if_"),
        (lambda: CancelOn(event=""), r"CancelOn\.event"),
        (lambda: CancelOn("e", if_="true", match="data.id"), r"CancelOn.*if_.*match"),
        (lambda: CancelOn("e", timeout=-5), r"CancelOn\.timeout"),
        (lambda: Timeouts(), r"Timeouts.*start.*finish"),
        (lambda: Timeouts(start="0s"), r"Timeouts\.start"),
        (lambda: Timeouts(finish="later"), r"Timeouts\.finish"),
        (lambda: TriggerCron("61 * * * *"), r"minute field '61'"),
        (lambda: TriggerCron("0 0 * * * *"), r"6 fields"),
        (lambda: TriggerCron("TZ=Mars/Base 0 * * * *"), r"timezone 'Mars/Base'"),
    ],
)
def test_invalid_options_name_the_field(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_trigger_count_and_size_boundaries(app: App) -> None:
    ten = [TriggerEvent(f"e{i}") for i in range(9)] + [TriggerCron("0 * * * *")]
    app.function(id="ten", triggers=ten)(lambda ctx: None)  # 10 triggers is the maximum
    eleven = [*ten, TriggerEvent("e10")]
    with pytest.raises(ConfigError, match=r"'eleven'.*at most 10 triggers, got 11"):
        app.function(id="eleven", triggers=eleven)(lambda ctx: None)
    BatchEvents(max_size=1000, timeout="1h")  # both at their maximum
    Debounce(period="1m", timeout="1m")  # timeout == period is allowed
