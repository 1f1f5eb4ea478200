"""System events: every cancellation announces itself, whatever path cancelled the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _polling import until

from stepline import App, CancelOn, Context, Debounce, Event, Singleton, TriggerEvent
from stepline.store.records import EventFilter, EventRecord
from stepline.testing import MockClock, TestEngine

Make = Callable[..., TestEngine]
T0 = 1_700_000_000.0
CANCELLED = "inngest/function.cancelled"


async def test_a_singleton_cancel_from_a_debounce_flush_emits_function_cancelled(
    app: App, make_engine: Make
) -> None:
    # issue 6 item 6: the run a debounce starts replaces the active singleton run; that
    # cancellation emitted no inngest/function.cancelled
    seen: list[dict[str, Any]] = []

    @app.function(
        id="latest",
        trigger=TriggerEvent("sync"),
        debounce=Debounce("1m"),
        singleton=Singleton("event.data.u", "cancel"),
    )
    async def latest(ctx: Context) -> Any:
        await ctx.step.sleep("work", "1h")

    @app.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
    async def cleanup(ctx: Context) -> Any:
        seen.append(dict(ctx.event.data))

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:

        async def flushed_run(count: int) -> Any:
            clock.advance(61)
            await t.tick()
            runs = await until(
                f"{count} runs of latest",
                lambda: _runs_if(t, "latest", count),
            )
            return runs[0]

        await t.send(Event("sync", {"u": "u1"}))
        first = await flushed_run(1)
        await t.wait_for_status(first.run_id, "SLEEPING")
        await t.send(Event("sync", {"u": "u1"}))
        await flushed_run(2)
        assert (await t.wait_for_run(first.run_id)).status == "CANCELLED"
        [cleanup_run] = await until("the cleanup run", lambda: _runs_if(t, "cleanup", 1))
        await t.wait_for_run(cleanup_run.run_id)
    assert [(s["run_id"], s["function_id"]) for s in seen] == [(first.run_id, "latest")]


async def _runs_if(t: TestEngine, function_id: str, count: int) -> list[Any] | None:
    runs = await t.runs(function_id=function_id)
    return sorted(runs, key=lambda r: r.created_at) if len(runs) == count else None


# -- the payloads of a run's ending events --------------------------------------------------------
# Inngest builds them in pkg/execution/executor/finalize.go (finalizeEvents, functionFinishedData
# in executor.go): function.finished for every ending with data._inngest.status, plus
# function.failed or function.cancelled with the same data; the status names are Inngest's
# StepStatus JSON names (pkg/enums/step_status.go).
FINISHED, FAILED = "inngest/function.finished", "inngest/function.failed"


def _listener(app: App, seen: list[tuple[str, dict[str, Any]]]) -> None:
    @app.function(
        id="listener",
        triggers=[
            TriggerEvent(name, if_='event.data.function_id == "subject"')
            for name in (FINISHED, FAILED, CANCELLED)
        ],
    )
    async def listener(ctx: Context) -> Any:
        seen.append((ctx.event.name, dict(ctx.event.data)))


async def _announced(t: TestEngine, count: int) -> None:
    runs = await until(f"{count} listener runs", lambda: _runs_if(t, "listener", count))
    for run in runs:
        await t.wait_for_run(run.run_id)


async def test_function_finished_is_emitted_for_a_completed_run(
    app: App, make_engine: Make
) -> None:
    # issue 7: function.finished carries event, events, result and _inngest.status
    seen: list[tuple[str, dict[str, Any]]] = []
    _listener(app, seen)

    @app.function(id="subject", trigger=TriggerEvent("go"))
    async def subject(ctx: Context) -> Any:
        return {"ok": True}

    async with make_engine() as t:
        run = await t.trigger(Event("go", {"n": 1}))
        await _announced(t, 1)
    [(name, data)] = seen
    assert name == FINISHED
    assert data["_inngest"] == {"status": "Completed"}
    assert (data["function_id"], data["run_id"], data["result"]) == (
        "subject",
        run.run_id,
        {"ok": True},
    )
    assert data["event"]["name"] == "go" and data["event"]["data"] == {"n": 1}
    assert data["events"] == [data["event"]]
    assert "error" not in data


async def test_a_failed_run_emits_function_finished_and_function_failed_with_events(
    app: App, make_engine: Make
) -> None:
    # issue 7: function.finished on failure too; function.failed data carries events
    seen: list[tuple[str, dict[str, Any]]] = []
    _listener(app, seen)

    @app.function(id="subject", trigger=TriggerEvent("go"), retries=0)
    async def subject(ctx: Context) -> Any:
        raise RuntimeError("boom")

    async with make_engine() as t:
        run = await t.trigger(Event("go", {"n": 2}))
        await _announced(t, 2)
    assert sorted(name for name, _ in seen) == [FAILED, FINISHED]
    for _, data in seen:
        assert data["_inngest"] == {"status": "Failed"}
        assert data["run_id"] == run.run_id
        assert data["error"]["name"] == "RuntimeError" and data["error"]["message"] == "boom"
        assert data["event"]["data"] == {"n": 2}
        assert data["events"] == [data["event"]]
        assert "result" not in data


async def test_a_cancelled_run_emits_function_finished_and_function_cancelled_with_events(
    app: App, make_engine: Make
) -> None:
    # issue 7: function.cancelled carries event, events and error {message: "function cancelled"}
    seen: list[tuple[str, dict[str, Any]]] = []
    _listener(app, seen)

    @app.function(id="subject", trigger=TriggerEvent("go"))
    async def subject(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        [event_id] = await t.send(Event("go", {"n": 3}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "SLEEPING")
        assert await t.app.cancel_run(run.run_id, reason="no longer needed")
        await _announced(t, 2)
    assert sorted(name for name, _ in seen) == [CANCELLED, FINISHED]
    for _, data in seen:
        assert data["_inngest"] == {"status": "Cancelled"}
        assert data["run_id"] == run.run_id and data["function_id"] == "subject"
        assert data["error"]["message"] == "function cancelled"
        assert data["reason"] == "no longer needed"  # Stepline's addition
        assert data["event"]["data"] == {"n": 3}
        assert data["events"] == [data["event"]]


async def test_one_send_cancelling_several_runs_announces_each_in_order(
    app: App, make_engine: Make
) -> None:
    """The runs one ingestion cancels are announced together: each run's function.finished
    then function.cancelled, ids increasing in the order of the cancellations, each with its
    own run's data; a run started by function.finished, cancelled among them, announces
    nothing (Inngest's finalizeEvents)."""

    @app.function(id="work", trigger=TriggerEvent("begin"))
    async def work(ctx: Context) -> Any:
        return 1

    @app.function(
        id="late",
        trigger=TriggerEvent(FINISHED, if_='event.data.function_id == "work"'),
        cancel_on=CancelOn("stop", if_='async.data.id == "late"'),
    )
    async def late(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    @app.function(
        id="subject", trigger=TriggerEvent("go"), cancel_on=CancelOn("stop", match="data.id")
    )
    async def subject(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        await t.send(Event("begin"))
        [late_run] = await until("the late run", lambda: _runs_if(t, "late", 1))
        await t.send([Event("go", {"id": "a"}), Event("go", {"id": "b"})])
        subjects = await until("two subject runs", lambda: _runs_if(t, "subject", 2))
        for run in [late_run, *subjects]:
            await t.wait_for_status(run.run_id, "SLEEPING")
        stops = [Event("stop", {"id": key}) for key in ("a", "late", "b")]
        await t.send(stops)
        for run in [late_run, *subjects]:
            assert (await t.wait_for_run(run.run_id)).status == "CANCELLED"
        announced = [e for e in _stored_announcements(t) if e.data["function_id"] != "work"]
    by_id = sorted(announced, key=lambda e: e.internal_id)
    assert [(e.name, e.data["event"]["data"]["id"]) for e in by_id] == [
        (FINISHED, "a"),
        (CANCELLED, "a"),
        (FINISHED, "b"),
        (CANCELLED, "b"),
    ]
    assert {e.data["run_id"] for e in by_id} == {run.run_id for run in subjects}
    assert by_id[0].data["run_id"] == by_id[1].data["run_id"] != by_id[2].data["run_id"]
    for e in by_id:
        assert e.data["events"] == [e.data["event"]]
        assert e.data["error"]["message"] == "function cancelled"
        assert e.data["reason"] == "cancelled by an event"


# -- runs started by a system event announce nothing ----------------------------------------------
# Inngest: pkg/execution/executor/finalize.go, finalizeEvents: a run whose trigger event is
# inngest/function.finished or inngest/function.failed emits no finished/failed/cancelled events
# at its end ("Don't recursively trigger internal finish handlers"); a run started by
# inngest/function.cancelled (or by any other event) still does.


async def _ended(t: TestEngine, function_id: str, count: int) -> list[Any]:
    runs = await until(f"{count} {function_id} runs", lambda: _runs_if(t, function_id, count))
    return [await t.wait_for_run(run.run_id) for run in runs]


async def test_two_function_finished_handlers_do_not_trigger_each_other_forever(
    app: App, make_engine: Make
) -> None:
    # issue 7 (review, item 1): audit's end triggered metrics, whose end triggered audit, ...
    @app.function(id="work", trigger=TriggerEvent("go"))
    async def work(ctx: Context) -> Any:
        return 1

    @app.function(id="audit", trigger=TriggerEvent(FINISHED))
    async def audit(ctx: Context) -> Any:
        return ctx.event.data["function_id"]

    @app.function(id="metrics", trigger=TriggerEvent(FINISHED))
    async def metrics(ctx: Context) -> Any:
        return ctx.event.data["function_id"]

    async with make_engine() as t:
        await t.trigger(Event("go"))
        [audited] = await _ended(t, "audit", 1)
        [measured] = await _ended(t, "metrics", 1)
        # a run's ending events are stored with its end: once both ended, any run they
        # started exists already
        assert len(await t.runs(function_id="audit")) == 1
        assert len(await t.runs(function_id="metrics")) == 1
    assert (audited.output, measured.output) == ("work", "work")


async def test_a_failing_function_failed_handler_emits_no_system_events(
    app: App, make_engine: Make
) -> None:
    # issue 7 (review, item 1): Inngest's finalize.go skips function.failed-triggered runs too
    @app.function(id="subject", trigger=TriggerEvent("go"), retries=0)
    async def subject(ctx: Context) -> Any:
        raise ValueError("boom")

    @app.function(id="on-failed", trigger=TriggerEvent(FAILED), retries=0)
    async def on_failed(ctx: Context) -> Any:
        raise ValueError("handler boom")

    @app.function(id="watch", trigger=TriggerEvent(FINISHED))
    async def watch(ctx: Context) -> Any:
        return ctx.event.data["function_id"]

    async with make_engine() as t:
        await t.trigger(Event("go"))
        [failed] = await _ended(t, "on-failed", 1)
        [watched] = await _ended(t, "watch", 1)
        assert len(await t.runs(function_id="on-failed")) == 1
        assert len(await t.runs(function_id="watch")) == 1
    assert failed.status == "FAILED" and watched.output == "subject"


async def test_a_function_finished_handler_runs_once_for_its_own_other_trigger(
    app: App, make_engine: Make
) -> None:
    # issue 7 (review, item 1): Inngest has no "never triggers itself" rule: a function with a
    # user trigger and a function.finished trigger runs again for its own end, and that run
    # (started by function.finished) announces nothing
    @app.function(id="both", triggers=[TriggerEvent("go"), TriggerEvent(FINISHED)])
    async def both(ctx: Context) -> Any:
        return ctx.event.name

    async with make_engine() as t:
        await t.trigger(Event("go"))
        runs = await _ended(t, "both", 2)
        assert len(await t.runs(function_id="both")) == 2
    assert sorted(r.output for r in runs) == ["go", FINISHED]


# -- announcements nothing listens to are only stored (_ingest_rules._unheard) --------------------
async def test_announcements_nothing_listens_to_are_stored_and_listeners_still_get_them(
    app: App, make_engine: Make
) -> None:
    """A cancellation by an event while nothing listens to inngest/function.*: both
    announcements stored with the cancellation, visible in the event list with their data.
    Then a run waiting for function.finished and a function triggered by function.cancelled:
    the next cancellation's announcements resume the one and start the other."""
    seen: list[str] = []

    @app.function(
        id="subject", trigger=TriggerEvent("go"), cancel_on=CancelOn("stop", match="data.id")
    )
    async def subject(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    @app.function(id="watcher", trigger=TriggerEvent("watch"))
    async def watcher(ctx: Context) -> Any:
        found = await ctx.step.wait_for_event(
            "end", event=FINISHED, timeout="1h", if_='async.data.function_id == "subject"'
        )
        return None if found is None else found.data["run_id"]

    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        first = await _cancelled_by_stop(t, "a")
        stored = await until("both announcements", lambda: _announcements_if(t, 2))
        assert sorted(e.name for e in stored) == [CANCELLED, FINISHED]
        for e in stored:
            assert e.data["run_id"] == first.run_id and e.data["event"]["data"] == {"id": "a"}
            assert e.data["_inngest"] == {"status": "Cancelled"}

        @app.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
        async def cleanup(ctx: Context) -> Any:
            seen.append(ctx.event.data["run_id"])

    async with make_engine(clock=clock) as t:
        [watch_event] = await t.send(Event("watch"))
        [watching] = await t.runs(event_id=watch_event)
        await t.wait_for_status(watching.run_id, "WAITING")
        second = await _cancelled_by_stop(t, "b")
        done = await t.wait_for_run(watching.run_id)
        assert (done.status, done.output) == ("COMPLETED", second.run_id)
        [cleanup_run] = await until("the cleanup run", lambda: _runs_if(t, "cleanup", 1))
        await t.wait_for_run(cleanup_run.run_id)
    assert seen == [second.run_id]


async def _cancelled_by_stop(t: TestEngine, key: str) -> Any:
    """A run of ``subject`` for ``key``, sleeping, then cancelled by its ``stop`` event."""
    [event_id] = await t.send(Event("go", {"id": key}))
    [run] = await t.runs(event_id=event_id)
    await t.wait_for_status(run.run_id, "SLEEPING")
    await t.send(Event("stop", {"id": key}))
    assert (await t.wait_for_run(run.run_id)).status == "CANCELLED"
    return run


def _announcements_if(t: TestEngine, count: int) -> list[EventRecord] | None:
    """The stored function.finished and function.cancelled events, once there are ``count``."""
    stored = _stored_announcements(t)
    return stored if len(stored) == count else None


def _stored_announcements(t: TestEngine) -> list[EventRecord]:
    """The stored function.finished and function.cancelled events."""
    store = t.app.engine.store
    return [
        stored.event
        for name in (FINISHED, CANCELLED)
        for stored in store.list_events(EventFilter(name=name))
    ]
