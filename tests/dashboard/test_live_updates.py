"""The change feed (engine/changes.py) and the dashboard's hub that fans it out over SSE."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

import pgtest
from stepline import App, Context, Debounce, Event, TriggerCron, TriggerEvent
from stepline.engine.changes import Change, ChangeFeed
from stepline.server.dashboard import dashboard_routes
from stepline.server.settings import ServerSettings
from stepline.testing import MockClock, TestEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from _polling import until


async def test_a_subscriber_gets_changes_from_its_loop_and_other_threads() -> None:
    feed = ChangeFeed()
    feed.publish(Change(("nobody-listens",)))  # no subscriber: nothing kept
    subscription = feed.subscribe()
    feed.publish(Change(("a",)))
    thread = threading.Thread(target=feed.publish_runs, args=(["b"],))
    thread.start()
    thread.join()
    seen: list[str] = []

    async def both() -> bool:
        if subscription.pending:
            seen.extend(r for c in await subscription.get() for r in c.run_ids)
        return seen == ["a", "b"]

    await until("both changes", both)
    subscription.close()
    feed.publish(Change(("c",)))
    assert not subscription.pending


async def test_the_engine_publishes_ingests_passes_and_cancellations(store_kind: str) -> None:
    app = App("feed")

    @app.function(id="nap", trigger=TriggerEvent("nap"))
    async def nap(ctx: Context) -> str:
        await ctx.step.run("first", lambda: 1)
        await ctx.step.sleep("long", "1d")
        return "done"

    async with TestEngine(
        app, store=pgtest.engine_store(store_kind), clock=MockClock(autojump=False)
    ):
        subscription = app.engine.changes.subscribe()
        [event_id] = await app.send_async(Event("nap", {}))
        [run] = await app.runs(event_id=event_id)
        changes: list[Change] = []

        async def sleeping() -> bool:
            if subscription.pending:
                changes.extend(await subscription.get())
            current = await app.get_run(run.run_id)
            return current is not None and current.status == "SLEEPING"

        await until("the run to sleep", sleeping)
        await until("its pass's change", lambda: _drain(subscription, changes, run.run_id, 3))
        # the ingest's change (on PostgreSQL the worker may lease the run by name, and publish
        # that, before the send is acknowledged: its notification goes out before the flush)
        [ingest] = [c for c in changes if c.ingested]
        assert ingest.ingested[0].internal_id == event_id
        assert ingest.run_ids == (run.run_id,)
        assert await app.cancel_run(run.run_id)
        await until(
            "the cancellation's change", lambda: _drain(subscription, changes, run.run_id, 4)
        )
        await app.pause_function("nap")
        await until("the pause", lambda: _has_function(subscription, changes, "nap"))
        subscription.close()


async def _drain(subscription: Any, changes: list[Change], run_id: str, count: int) -> bool:
    if subscription.pending:
        changes.extend(await subscription.get())
    return sum(run_id in c.run_ids for c in changes) >= count


async def _has_function(subscription: Any, changes: list[Change], fn: str) -> bool:
    if subscription.pending:
        changes.extend(await subscription.get())
    return any(fn in c.function_ids for c in changes)


async def test_one_hub_update_reaches_every_browser(tmp_path: Path) -> None:
    app = App("hub")

    @app.function(id="echo", trigger=TriggerEvent("echo"))
    async def echo(ctx: Context) -> Any:
        return await ctx.step.run("say", lambda: ctx.event.data)

    routes = dashboard_routes(app, ServerSettings(dev=True))
    async with TestEngine(app, store="sqlite", path=tmp_path / "db.sqlite"):
        board = _dashboard_of(routes)
        streams = [board.hub.listen() for _ in range(3)]
        hellos = [await s.__anext__() for s in streams]
        assert all(b"connected" in h for h in hellos)
        assert board.hub.listeners == 3
        [event_id] = await app.send_async(Event("echo", {"x": 1}))
        [run] = await app.runs(event_id=event_id)
        await app.wait_for_run(run.run_id)
        received: list[list[dict[str, Any]]] = [[] for _ in streams]

        async def read(i: int) -> None:
            while not any(
                item["id"] == run.run_id and item["status"] == "COMPLETED" for item in received[i]
            ):
                message = await streams[i].__anext__()
                if message.startswith(b"event: runs\n"):
                    data = message.split(b"\ndata: ", 1)[1].strip()
                    received[i].extend(orjson.loads(data))

        await asyncio.wait_for(asyncio.gather(*(read(i) for i in range(3))), 20)
        row = next(item for item in received[0] if item["status"] == "COMPLETED")
        assert f'data-run="{run.run_id}"' in row["html"] and row["function"] == "echo"
        assert row["events"] == [event_id]
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
        assert board.hub.listeners == 0


def _dashboard_of(routes: list[Any]) -> Any:
    """The ``Dashboard`` behind the routes (the SSE endpoint closes over it)."""
    live = next(r for r in routes if getattr(r, "path", "") == "/live")
    cells = live.endpoint.__closure__ or ()
    handler = next(c.cell_contents for c in cells if callable(c.cell_contents))
    return handler.__self__


async def test_changes_of_another_process_reach_the_pages(tmp_path: Path) -> None:
    """A dashboard whose app runs no worker (``stepline server --no-worker``) still shows the
    runs a worker elsewhere executes: its hub looks at the database for the whole process."""
    db = tmp_path / "shared.sqlite"
    board_app = App("hub", db=str(db))
    routes = dashboard_routes(board_app, ServerSettings(dev=True))
    board = _dashboard_of(routes)
    worker_app = App("hub")

    @worker_app.function(id="echo", trigger=TriggerEvent("echo"))
    async def echo(ctx: Context) -> Any:
        return await ctx.step.run("say", lambda: ctx.event.data)

    try:
        async with TestEngine(worker_app, store="sqlite", path=db):
            stream = board.hub.listen()
            await stream.__anext__()
            await until("the hub's first look", lambda: board.hub.looks > 0)
            [event_id] = await worker_app.send_async(Event("echo", {"x": 1}))
            [run] = await worker_app.runs(event_id=event_id)
            await worker_app.wait_for_run(run.run_id)
            kinds: dict[str, list[Any]] = {"runs": [], "events": []}

            async def read() -> None:
                while not (
                    any(i["id"] == run.run_id and i["status"] == "COMPLETED" for i in kinds["runs"])
                    and any(i["id"] == event_id for i in kinds["events"])
                ):
                    message = await stream.__anext__()
                    head, _, data = message.partition(b"\ndata: ")
                    kind = head.removeprefix(b"event: ").decode()
                    if kind in kinds:
                        kinds[kind].extend(orjson.loads(data))

            await asyncio.wait_for(read(), 30)
            await stream.aclose()  # type: ignore[attr-defined]
    finally:
        board_app.close()


async def test_the_engine_publishes_what_housekeeping_ingests(store_kind: str) -> None:
    # a cron tick's event and the run a debounce's flush starts are ingested by the worker's
    # housekeeping, not by a send: the live event stream showed them only after a reload
    app = App("housekept")

    @app.function(id="typed", trigger=TriggerEvent("typed"), debounce=Debounce(period="1m"))
    async def typed(ctx: Context) -> str:
        return "saved"

    @app.function(id="hourly", trigger=TriggerCron("0 * * * *"))
    async def hourly(ctx: Context) -> str:
        return "ticked"

    clock = MockClock(autojump=False)
    async with TestEngine(app, store=pgtest.engine_store(store_kind), clock=clock) as t:
        [typed_event] = await app.send_async(Event("typed", {"text": "h"}))
        subscription = app.engine.changes.subscribe()
        clock.advance(3600)  # the debounce is due, and the hour's cron tick
        await t.tick()
        seen: list[Change] = []

        async def published() -> bool:
            if subscription.pending:
                seen.extend(await subscription.get())
            started = {
                (r.internal_id, run_id) for c in seen for r in c.ingested for run_id in r.run_ids
            }
            events = {r.internal_id for c in seen for r in c.ingested}
            runs = {r.function_id: r.run_id for r in await app.runs()}
            return (typed_event, runs.get("typed")) in started and any(
                (e, runs.get("hourly")) in started for e in events
            )

        await until("the flush's run and the cron tick's event in the feed", published)
        subscription.close()
