"""The announcements of runs cancelled by events (``engine/_announce.py``): when nothing hears
them they are only stored (memory, SQLite: ``UnheardEvents``), with the data the ingest path
makes; a wait on them, a function listening to them or a cancel matcher on them still gets
them, on every store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _polling import until

from stepline import App, CancelOn, Context, Event, TriggerEvent
from stepline.engine._system_events import ending_data
from stepline.store.capabilities import UnheardEvents
from stepline.store.records import EventFilter, EventIngest, EventRecord
from stepline.testing import MockClock, TestEngine

Make = Callable[..., TestEngine]
T0 = 1_700_000_000.0
FINISHED, CANCELLED = "inngest/function.finished", "inngest/function.cancelled"
REASON = "cancelled by an event"


def _subject(app: App) -> None:
    @app.function(
        id="subject", trigger=TriggerEvent("go"), cancel_on=CancelOn("stop", match="data.id")
    )
    async def subject(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")


async def _sleeping(t: TestEngine, *keys: str) -> list[Any]:
    """Runs of ``subject``, one per key (sent together), each SLEEPING."""
    ids = await t.send([Event("go", {"id": key, "note": 'ñ"\\'}) for key in keys])
    runs = [(await t.runs(event_id=event_id))[0] for event_id in ids]
    for run in runs:
        await t.wait_for_status(run.run_id, "SLEEPING")
    return runs


async def _cancel(t: TestEngine, runs: list[Any], *keys: str) -> None:
    await t.send([Event("stop", {"id": key}) for key in keys])
    for run in runs:
        assert (await t.wait_for_run(run.run_id)).status == "CANCELLED"


async def _started(t: TestEngine, name: str, status: str) -> Any:
    """The run an event ``name`` starts, once it is ``status``."""
    [event_id] = await t.send(Event(name))
    [run] = await t.runs(event_id=event_id)
    await t.wait_for_status(run.run_id, status)
    return run


async def _cancelled(t: TestEngine, key: str) -> Any:
    """A run of ``subject`` for ``key``, sleeping, then cancelled by its ``stop`` event."""
    [run] = await _sleeping(t, key)
    await _cancel(t, [run], key)
    return run


def _stored(t: TestEngine, name: str) -> list[EventRecord]:
    return [s.event for s in t.app.engine.store.list_events(EventFilter(name=name))]


def _announced_if(t: TestEngine, count: int) -> list[EventRecord] | None:
    """The stored function.finished and function.cancelled events, once there are ``count``."""
    stored = _stored(t, FINISHED) + _stored(t, CANCELLED)
    return stored if len(stored) == count else None


def _plans_of(t: TestEngine, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The events of ``names`` the engine plans from now on (the ingest path plans each)."""
    engine = t.app.engine
    planned: list[str] = []
    plan = engine.plan

    def spy(record: EventRecord) -> EventIngest:
        if record.name in names:
            planned.append(record.name)
        return plan(record)

    monkeypatch.setattr(engine, "plan", spy)
    return planned


async def test_announcements_nothing_hears_are_stored_with_the_ingest_paths_data(
    app: App, make_engine: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three runs cancelled by one send while nothing hears inngest/function.*: each run's
    function.finished then function.cancelled, ids increasing, sent and received when they
    were made, their data exactly what ``ending_data`` makes of the run's trigger event (the
    ingest path's), and on memory and SQLite nothing planned for them."""
    _subject(app)
    clock = MockClock(start=T0, autojump=False)
    async with make_engine(clock=clock) as t:
        runs = await _sleeping(t, "a", "b", "c")
        planned = _plans_of(t, (FINISHED, CANCELLED), monkeypatch)
        await _cancel(t, runs, "c", "a", "b")
        store = t.app.engine.store
        with store.transaction() as tx:
            quick = isinstance(tx, UnheardEvents)
        announced = sorted(
            await until("the announcements", lambda: _announced_if(t, 6)),
            key=lambda e: e.internal_id,
        )
        expected: list[tuple[str, dict[str, Any]]] = []
        for run in [runs[2], runs[0], runs[1]]:  # in the order of the cancellations
            payloads = [e.payload() for e in store.get_events(list(run.event_ids))]
            data = ending_data("subject", run.run_id, payloads, "CANCELLED", reason=REASON)
            expected += [(FINISHED, data), (CANCELLED, data)]
    assert [(e.name, e.data) for e in announced] == expected
    assert all((e.user, e.id, e.ts) == ({}, None, T0) for e in announced)
    assert planned == ([] if quick else [FINISHED, CANCELLED] * 3)


async def test_a_wait_on_function_cancelled_is_resolved_when_no_function_listens(
    app: App, make_engine: Make
) -> None:
    _subject(app)

    @app.function(id="watcher", trigger=TriggerEvent("watch"))
    async def watcher(ctx: Context) -> Any:
        found = await ctx.step.wait_for_event(
            "end", event=CANCELLED, timeout="1h", if_='async.data.function_id == "subject"'
        )
        return None if found is None else found.data["run_id"]

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        watching = await _started(t, "watch", "WAITING")
        run = await _cancelled(t, "a")
        done = await t.wait_for_run(watching.run_id)
        ends = [
            (e.name, e.data["function_id"]) for e in _stored(t, FINISHED) + _stored(t, CANCELLED)
        ]
        assert sorted(ends) == [
            (CANCELLED, "subject"),
            (FINISHED, "subject"),
            (FINISHED, "watcher"),
        ]
    assert (done.status, done.output) == ("COMPLETED", run.run_id)


async def test_a_function_listening_to_function_cancelled_is_started(
    app: App, make_engine: Make
) -> None:
    _subject(app)
    seen: list[tuple[str, str]] = []

    @app.function(id="cleanup", trigger=TriggerEvent(CANCELLED))
    async def cleanup(ctx: Context) -> Any:
        seen.append((ctx.event.data["run_id"], ctx.event.data["event"]["data"]["id"]))

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        runs = await _sleeping(t, "a", "b")
        await _cancel(t, runs, "a", "b")
        started = await until("two cleanup runs", lambda: _runs_if(t, "cleanup", 2))
        for cleanup_run in started:
            await t.wait_for_run(cleanup_run.run_id)
    assert sorted(seen) == sorted([(runs[0].run_id, "a"), (runs[1].run_id, "b")])


async def test_a_cancel_matcher_on_function_cancelled_cancels_and_is_announced(
    app: App, make_engine: Make
) -> None:
    """A run cancelled by another run's function.cancelled: its own cancellation is announced
    in turn, with nothing listening to function.*."""
    _subject(app)

    @app.function(
        id="follower",
        trigger=TriggerEvent("follow"),
        cancel_on=CancelOn(CANCELLED, if_='async.data.function_id == "subject"'),
    )
    async def follower(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1h")

    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        following = await _started(t, "follow", "SLEEPING")
        await _cancelled(t, "a")
        assert (await t.wait_for_run(following.run_id)).status == "CANCELLED"
        cancelled = _stored(t, CANCELLED)
    assert sorted(e.data["function_id"] for e in cancelled) == ["follower", "subject"]


async def _runs_if(t: TestEngine, function_id: str, count: int) -> list[Any] | None:
    runs = await t.runs(function_id=function_id)
    return runs if len(runs) == count else None


async def test_a_cancellation_reports_its_announcements_only_to_callers_that_use_them(
    app: App, make_engine: Make
) -> None:
    """``Engine.cancel`` (the API's and the start timeout's cancellations, whose results go to
    the change feed) reports each announcement as an event ingested; an ingest job, which does
    not use them, gets none (``report=False``) and the events are stored all the same, in its
    transaction."""
    _subject(app)
    async with make_engine(clock=MockClock(start=T0, autojump=False)) as t:
        engine = t.app.engine
        first, second = await _sleeping(t, "a", "b")
        reported = await engine.writer.write(lambda tx: engine.cancel(tx, first.run_id, "why", T0))
        assert reported is not None
        assert [(r.duplicate, r.run_ids, r.cancelled) for r in reported] == [(False, (), ())] * 2
        stored = sorted(_stored(t, FINISHED) + _stored(t, CANCELLED), key=lambda e: e.internal_id)
        assert [r.internal_id for r in reported] == [e.internal_id for e in stored]

        def cancelled_by_an_event(tx: Any) -> list[Any]:
            [stop] = tx.ingest(
                [engine.plan(engine.event_record(Event("stop", {"id": "b"}), T0))],
                T0,
                engine.wait_matches,
            )
            assert stop.cancelled == ((second.run_id, "subject"),)
            return engine.announce_cancellations(tx, [stop], T0, report=False)

        assert await engine.writer.write(cancelled_by_an_event) == []
        assert len(_stored(t, CANCELLED)) == 2
