"""Flow control as Inngest's server decides it (issue 7): each test names the Inngest source file
the behaviour comes from (github.com/inngest/inngest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _ignored import batch_with_cancel_on

from stepline import (
    App,
    BatchEvents,
    CancelOn,
    ConfigError,
    Context,
    Debounce,
    Event,
    EventError,
    RateLimit,
    Singleton,
    StepError,
    Throttle,
    Timeouts,
    TriggerEvent,
)
from stepline.testing import MockClock, TestEngine

Make = Callable[..., TestEngine]
T0 = 1_700_000_000.0


async def _started_at(t: TestEngine, function_id: str, count: int) -> list[float]:
    """When each of the function's ``count`` runs started, once all have ended."""
    runs = await t.runs(function_id=function_id, limit=1000)
    assert len(runs) == count
    ended = [await t.wait_for_run(r.run_id) for r in runs]
    return sorted(r.started_at.timestamp() for r in ended if r.started_at is not None)


# -- rate limit -----------------------------------------------------------------------------------
async def test_rate_limit_admits_a_tenth_of_the_limit_at_once(app: App, make_engine: Make) -> None:
    # issue 7 rate limit; Inngest: pkg/execution/ratelimit/ratelimit_lua.go (burst := limit / 10)
    # and pkg/execution/ratelimit/lua/ratelimit.lua (GCRA admits burst + 1 at once)
    @app.function(id="rl", trigger=TriggerEvent("ping"), rate_limit=RateLimit(20, "1m"))
    async def rl(ctx: Context) -> Any:
        return None

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send([Event("ping", {"i": i}) for i in range(20)])
        assert len(await t.runs(function_id="rl", limit=100)) == 3  # 20 // 10 + 1
        clock.advance(3)  # one emission interval (60 s / 20): one more
        await t.send([Event("ping", {"i": i}) for i in range(5)])
        assert len(await t.runs(function_id="rl", limit=100)) == 4
        skips = await t.app.skipped("rl", limit=100)
    assert len(skips) == 21
    assert {s.reason for s in skips} == {"rate_limit"}


async def test_rate_limit_under_ten_admits_one_at_once(app: App, make_engine: Make) -> None:
    # issue 7 rate limit; Inngest: pkg/execution/ratelimit/ratelimit_lua.go (burst 0 below 10)
    @app.function(id="rl", trigger=TriggerEvent("ping"), rate_limit=RateLimit(2, "1h"))
    async def rl(ctx: Context) -> Any:
        return None

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send([Event("ping"), Event("ping")])
        assert len(await t.runs(function_id="rl")) == 1
        clock.advance(1800)  # period / limit
        await t.send([Event("ping"), Event("ping")])
        assert len(await t.runs(function_id="rl")) == 2


async def _only_run(t: TestEngine, function_id: str) -> Any:
    """The output of the function's single run, once it has ended."""
    [run] = await t.runs(function_id=function_id)
    done = await t.wait_for_run(run.run_id)
    assert done.status == "COMPLETED"
    return done.output


async def test_rate_limit_is_decided_per_event_before_a_debounce(
    app: App, make_engine: Make
) -> None:
    # issue 7 rate limit before debounce; Inngest: pkg/execution/executor/executor.go (schedule:
    # rate limit, then debounce) and executor/service.go (a debounce's run: PreventRateLimit)
    @app.function(
        id="db",
        trigger=TriggerEvent("typed"),
        rate_limit=RateLimit(1, "1h"),
        debounce=Debounce(period="10s"),
    )
    async def db(ctx: Context) -> Any:
        return ctx.event.data["n"]

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send(Event("typed", {"n": 1}))
        clock.advance(2)
        await t.send(Event("typed", {"n": 2}))  # over the limit: never enters the debounce
        clock.advance(11)
        await t.tick()
        assert await _only_run(t, "db") == 1
        skips = await t.app.skipped("db")
    assert [s.reason for s in skips] == ["rate_limit"]


async def test_idempotency_is_decided_per_event_before_a_debounce(
    app: App, make_engine: Make
) -> None:
    # issue 7 idempotency before debounce; Inngest: pkg/sdk/function.go (idempotency is a rate
    # limit of 1 per 24 h) and pkg/execution/executor/executor.go (rate limit before debounce)
    @app.function(
        id="db",
        trigger=TriggerEvent("typed"),
        idempotency="event.data.k",
        debounce=Debounce(period="10s"),
    )
    async def db(ctx: Context) -> Any:
        return ctx.event.data["n"]

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send(Event("typed", {"k": "a", "n": 1}))
        clock.advance(2)
        await t.send(Event("typed", {"k": "a", "n": 2}))  # same key: skipped, not debounced
        clock.advance(11)
        await t.tick()
        assert await _only_run(t, "db") == 1
        skips = await t.app.skipped("db")
    assert [s.reason for s in skips] == ["idempotency"]


async def test_batches_bypass_the_rate_limit(app: App, make_engine: Make) -> None:
    # issue 7 batches bypass rate limit; Inngest: pkg/execution/executor/service.go (a batch is
    # scheduled with PreventRateLimit: "Batching does not work with rate limiting")
    @app.function(
        id="batched",
        trigger=TriggerEvent("item"),
        rate_limit=RateLimit(1, "1h"),
        batch_events=BatchEvents(max_size=2, timeout="10s"),
    )
    async def batched(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        await t.send([Event("item", {"i": i}) for i in range(4)])
        runs = await t.runs(function_id="batched")
        outputs = sorted([(await t.wait_for_run(r.run_id)).output for r in runs])
        skips = await t.app.skipped("batched")
    assert outputs == [[0, 1], [2, 3]]
    assert skips == []


# -- throttle -------------------------------------------------------------------------------------
async def test_throttle_starts_limit_runs_at_once(app: App, make_engine: Make) -> None:
    # issue 7 throttle; Inngest: pkg/execution/state/redis_state/lua/includes/gcra.lua
    # (gcraCapacity: capacity = limit + burst)
    @app.function(id="th", trigger=TriggerEvent("job"), throttle=Throttle(limit=10, period="1m"))
    async def th(ctx: Context) -> Any:
        return None

    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        await t.send([Event("job", {"i": i}) for i in range(12)])
        starts = await _started_at(t, "th", 12)
    assert [round(s - T0) for s in starts] == [0] * 10 + [6, 12]


async def test_throttle_burst_is_on_top_of_the_limit(app: App, make_engine: Make) -> None:
    # issue 7 throttle; Inngest: pkg/execution/state/redis_state/lua/includes/gcra.lua
    @app.function(
        id="th", trigger=TriggerEvent("job"), throttle=Throttle(limit=2, period="1m", burst=1)
    )
    async def th(ctx: Context) -> Any:
        return None

    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        await t.send([Event("job", {"i": i}) for i in range(5)])
        starts = await _started_at(t, "th", 5)
    assert [round(s - T0) for s in starts] == [0, 0, 0, 30, 60]


# -- duplicate event ids --------------------------------------------------------------------------
async def test_duplicate_event_id_starts_no_run_but_resumes_waits(
    app: App, make_engine: Make
) -> None:
    # issue 7 duplicate ids; Inngest: pkg/execution/runner/runner.go (an event seen before skips
    # new runs; pauses are still consumed by every event)
    @app.function(id="start", trigger=TriggerEvent("paid"))
    async def start(ctx: Context) -> Any:
        return None

    @app.function(id="waiter", trigger=TriggerEvent("order"))
    async def waiter(ctx: Context) -> Any:
        got = await ctx.step.wait_for_event("pay", event="paid", match="data.o", timeout="1h")
        return None if got is None else got.data["o"]

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        await t.send(Event("paid", {"o": 0}, id="pay-1"))  # first use of the id: starts a run
        [order_event] = await t.send(Event("order", {"o": 1}))
        [run] = await t.runs(event_id=order_event)
        await t.wait_for_status(run.run_id, "WAITING")
        await t.send(Event("paid", {"o": 1}, id="pay-1"))  # a duplicate id
        done = await t.wait_for_run(run.run_id)
        assert done.output == 1
        assert len(await t.runs(function_id="start")) == 1


async def test_duplicate_event_id_still_triggers_cancel_on(app: App, make_engine: Make) -> None:
    # issue 7 duplicate ids; Inngest: pkg/execution/runner/runner.go (cancellation pauses are
    # matched for every received event)
    @app.function(
        id="long",
        trigger=TriggerEvent("order"),
        cancel_on=[CancelOn("order/cancelled", match="data.o")],
    )
    async def long(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1d")

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        await t.send(Event("order/cancelled", {"o": 0}, id="c-1"))
        [order_event] = await t.send(Event("order", {"o": 1}))
        [run] = await t.runs(event_id=order_event)
        await t.wait_for_status(run.run_id, "SLEEPING")
        await t.send(Event("order/cancelled", {"o": 1}, id="c-1"))  # a duplicate id
        done = await t.wait_for_run(run.run_id)
    assert done.status == "CANCELLED"


# -- event timestamps -----------------------------------------------------------------------------
async def test_event_ts_in_the_future_delays_the_runs_it_starts(
    app: App, make_engine: Make
) -> None:
    # issue 7 future ts; Inngest: pkg/execution/executor/executor.go (a future event ts is the
    # run's scheduled start; see schedule_scheduled_at_test.go "future event ts is used")
    @app.function(id="later", trigger=TriggerEvent("remind"))
    async def later(ctx: Context) -> Any:
        return "sent"

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("remind", ts=int((T0 + 3600) * 1000)))
        [run] = await t.runs(event_id=event_id)
        clock.advance(1800)
        await t.tick()
        assert (await t.app.get_run(run.run_id)).status == "QUEUED"  # type: ignore[union-attr]
        clock.advance(1800)
        await t.tick()
        done = await t.wait_for_run(run.run_id)
    assert done.output == "sent"
    assert done.started_at is not None and done.started_at.timestamp() == T0 + 3600


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        (315_532_799_999, "before Jan 1, 1980"),
        (4_102_444_800_001, "after Jan 1, 2100"),
        # neither before nor after: it was taken, then failed the send with a raw ValueError
        (float("nan"), "ts must be epoch milliseconds, got nan"),
    ],
)
def test_event_ts_outside_1980_to_2100_is_refused(tmp_path: Path, ts: float, message: str) -> None:
    # issue 7 ts range; Inngest: pkg/event/event.go (Validate: startTimestamp, endTimestamp)
    app = App("ts", db=str(tmp_path / "ts.db"))
    with pytest.raises(EventError, match=f"event 'remind'.*{message}"):
        app.send(Event("remind", ts=ts))
    app.close()


# -- invoke timeout -------------------------------------------------------------------------------
async def test_invoke_timeout_fails_the_step_and_the_child_keeps_running(
    app: App, make_engine: Make
) -> None:
    # issue 7 invoke timeout; Inngest: pkg/execution/executor/service.go (handlePauseTimeout: an
    # invoke's pause times out with InngestInvokeTimeoutError, "Timed out waiting for invoked
    # function to complete"; the invoked run is not cancelled)
    @app.function(id="slow", trigger=TriggerEvent("slow/go"))
    async def slow(ctx: Context) -> Any:
        await ctx.step.sleep("think", "1h")
        return "late"

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        try:
            return await ctx.step.invoke("ask", function=slow, timeout="10m")
        except StepError as exc:
            return {"error": exc.error_name, "message": exc.error_message, "at": ctx.event.ts}

    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go"))
        [parent] = await t.runs(event_id=event_id)
        done = await t.wait_for_run(parent.run_id)
        [child] = await t.runs(function_id="slow")
        child_done = await t.wait_for_run(child.run_id)
        again = await t.app.get_run(parent.run_id)
    assert done.output["error"] == "InngestInvokeTimeoutError"
    assert done.output["message"] == "Timed out waiting for invoked function to complete"
    assert done.ended_at is not None and done.ended_at.timestamp() == T0 + 600
    assert child_done.output == "late"  # the child kept running
    assert again is not None and again.output == done.output  # its late result changes nothing
    [step] = [s for s in again.steps if s.id == "ask"]
    assert step.status == "FAILED"


# -- an invoked run is admitted as any run --------------------------------------------------------
# Inngest: pkg/execution/runner/runner.go (Initialize: an invoke event is scheduled by
# executor.Schedule like any event; a rate-limited invoke fails the invoker with "invoked function
# is rate limited") and pkg/execution/executor/executor.go (Schedule: idempotency, rate limit,
# singleton, throttle/concurrency keys, cancellations and timeouts for every run it creates).


async def test_a_rate_limited_invoke_fails_the_callers_step(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 2): invoked children skipped every flow-control option
    @app.function(id="child", trigger=TriggerEvent("child/go"), rate_limit=RateLimit(1, "1h"))
    async def child(ctx: Context) -> Any:
        return "ran"

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        outcomes = []
        for n in range(2):
            try:
                outcomes.append(await ctx.step.invoke(f"ask-{n}", function=child))
            except StepError as exc:
                outcomes.append(f"{exc.error_name}: {exc.error_message}")
        return outcomes

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        assert len(await t.runs(function_id="child")) == 1
    assert run.output == ["ran", "Error: invoked function is rate limited"]


async def test_a_singleton_skip_fails_the_invoking_step(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 2): a skipped invoke fails the caller at once (Inngest's
    # executor.go Schedule returns ErrFunctionSkipped and leaves the caller waiting: see
    # docs/inngest.md)
    @app.function(id="child", trigger=TriggerEvent("child/go"), singleton=Singleton(mode="skip"))
    async def child(ctx: Context) -> Any:
        await ctx.step.sleep("hold", "1h")
        return "ran"

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        try:
            return await ctx.step.invoke("ask", function=child)
        except StepError as exc:
            return f"{exc.error_name}: {exc.error_message}"

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        [holder_event] = await t.send(Event("child/go"))
        [holder] = await t.runs(event_id=holder_event)
        await t.wait_for_status(holder.run_id, "SLEEPING")
        run = await t.trigger(Event("go"))
        assert len(await t.runs(function_id="child")) == 1
    assert run.output == "Error: invoked function is skipped: a singleton run is active"


async def test_a_throttled_invoke_starts_when_the_throttle_allows(
    app: App, make_engine: Make
) -> None:
    # issue 7 (review, item 2): the throttle delays an invoked run as any run
    @app.function(id="child", trigger=TriggerEvent("child/go"), throttle=Throttle(1, "1h"))
    async def child(ctx: Context) -> Any:
        return ctx.event.data["n"]

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        first = await ctx.step.invoke("one", function=child, data={"n": 1})
        second = await ctx.step.invoke("two", function=child, data={"n": 2})
        return [first, second]

    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        run = await t.trigger(Event("go"))
        starts = await _started_at(t, "child", 2)
    assert run.output == [1, 2]
    assert starts[1] - starts[0] >= 3600


async def test_an_invoked_run_gets_its_functions_timeouts(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 2): Inngest's executor.go Schedule gives every run its timeouts
    @app.function(id="child", trigger=TriggerEvent("child/go"), timeouts=Timeouts(finish="10m"))
    async def child(ctx: Context) -> Any:
        await ctx.step.sleep("think", "1h")
        return "late"

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        try:
            return await ctx.step.invoke("ask", function=child, timeout="1h")
        except StepError:
            return "failed"

    clock = MockClock(start=T0)
    async with make_engine(clock=clock) as t:
        done = await t.trigger(Event("go"))
        [kid] = await t.runs(function_id="child")
        kid_done = await t.wait_for_run(kid.run_id)
    assert kid_done.status == "CANCELLED" and kid_done.error is not None
    assert "timeouts.finish" in kid_done.error["message"]
    assert done.output == "failed"


async def test_a_cancelled_invoked_run_fails_the_callers_step(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 2, found while testing it): a cancelled child left its caller
    # waiting forever. Inngest: pkg/execution/executor/finalize.go (finalizeEvents: a cancelled
    # run's function.finished carries the invoke correlation id and the error "function
    # cancelled"; HandleInvokeFinish resumes the caller with it)
    @app.function(id="child", trigger=TriggerEvent("child/go"))
    async def child(ctx: Context) -> Any:
        await ctx.step.sleep("think", "1h")
        return "late"

    @app.function(id="caller", trigger=TriggerEvent("go"))
    async def caller(ctx: Context) -> Any:
        try:
            return await ctx.step.invoke("ask", function=child)
        except StepError as exc:
            return f"{exc.error_name}: {exc.error_message}"

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go"))
        [parent] = await t.runs(event_id=event_id)
        await t.wait_for_status(parent.run_id, "WAITING")
        [kid] = await t.runs(function_id="child")
        await t.wait_for_status(kid.run_id, "SLEEPING")
        await t.app.cancel_run(kid.run_id)
        done = await t.wait_for_run(parent.run_id)
    assert done.output == "Error: function cancelled"


# -- issue 7 review, item 3 -----------------------------------------------------------------------
async def test_the_rate_limit_is_decided_before_the_singleton(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 3a); Inngest: pkg/execution/executor/executor.go (schedule(): the
    # rate limit is checked, and its slot taken, before the singleton is considered)
    @app.function(
        id="one",
        trigger=TriggerEvent("go"),
        rate_limit=RateLimit(1, "1h"),
        singleton=Singleton(mode="skip"),
    )
    async def one(ctx: Context) -> Any:
        await ctx.step.sleep("hold", "1h")

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        [first] = await t.send(Event("go"))
        [run] = await t.runs(event_id=first)
        await t.wait_for_status(run.run_id, "SLEEPING")
        await t.send(Event("go"))
        skips = await t.app.skipped("one")
    assert [s.reason for s in skips] == ["rate_limit"]


async def test_event_ts_in_the_future_delays_a_debounced_run(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 3b); Inngest: pkg/execution/executor/executor.go (Schedule: `if
    # req.BatchID == nil` a future ts of the run's event is its start; a debounce's run is
    # scheduled with its last event)
    @app.function(id="later", trigger=TriggerEvent("remind"), debounce=Debounce("1m"))
    async def later(ctx: Context) -> Any:
        return "sent"

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send(Event("remind", ts=int((T0 + 3600) * 1000)))
        clock.advance(61)
        await t.tick()
        [run] = await t.runs(function_id="later")
        assert (await t.app.get_run(run.run_id)).status == "QUEUED"  # type: ignore[union-attr]
        clock.advance(3600 - 61)
        await t.tick()
        done = await t.wait_for_run(run.run_id)
    assert done.started_at is not None and done.started_at.timestamp() == T0 + 3600


async def test_a_batch_run_gets_no_cancel_on(app: App, make_engine: Make) -> None:
    # issue 7 (review, item 3c); Inngest: pkg/execution/executor/executor.go (Schedule: "Create
    # cancellation pauses immediately, only if this is a non-batch event"). Said at
    # registration (issue 6 risks d): tests/integration/test_ignored_options.py
    async def batched(ctx: Context) -> Any:
        await ctx.step.sleep("hold", "1h")
        return len(ctx.events)

    batch_with_cancel_on(app, batched, "item", BatchEvents(max_size=2, timeout="10s"), "stop")

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        await t.send([Event("item"), Event("item")])
        [run] = await t.runs(function_id="batched")
        await t.wait_for_status(run.run_id, "SLEEPING")
        await t.send(Event("stop"))
        clock.advance(3600)
        await t.tick()
        done = await t.wait_for_run(run.run_id)
    assert (done.status, done.output) == ("COMPLETED", 2)


def test_more_than_five_cancel_on_are_refused(app: App) -> None:
    # issue 7 (review, item 3e); Inngest: pkg/consts/consts.go (MaxCancellations = 5)
    with pytest.raises(ConfigError, match="at most 5 cancel_on"):

        @app.function(
            id="many",
            trigger=TriggerEvent("go"),
            cancel_on=[CancelOn(f"stop{n}") for n in range(6)],
        )
        async def many(ctx: Context) -> Any:
            return None
