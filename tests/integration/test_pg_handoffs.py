"""PostgreSQL hand-offs end to end: a run another process sends is leased to an idle worker of
its function in the sender's own transaction, and the worker starts its pass from the
notification, with no lease of its own (``store/postgres/_handoffs.py``)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import psycopg
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.store.capabilities import HandedLeases
from stepline.store.postgres._handoffs import Handed


def _apps(pg_url: str) -> tuple[App, App, asyncio.Event]:
    """The worker's app and a sender's (another App on the database: its own engine and store,
    as another process would have), and an event set by the function's step."""
    app, sender = App("handoffs", db=pg_url), App("handoffs", db=pg_url)
    done = asyncio.Event()

    async def mark() -> str:
        done.set()
        return "marked"

    @app.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet(ctx: Context) -> str:
        return await ctx.step.run("mark", mark)

    @sender.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet_too(ctx: Context) -> str:
        return "never here"

    return app, sender, done


async def _send(sender: App, done: asyncio.Event, data: dict[str, Any] | None = None) -> str:
    done.clear()
    [event_id] = await asyncio.to_thread(sender.send, Event("greet/please", data or {}))
    await asyncio.wait_for(done.wait(), 30)
    return event_id


async def test_an_idle_worker_starts_the_run_another_process_handed_it(pg_url: str) -> None:
    """The run comes with its lease: no lease by name, no lease attempt of the worker's."""
    app, sender, done = _apps(pg_url)
    try:
        async with app.worker(worker_id="taker", poll_interval=None) as worker:
            await asyncio.wait_for(worker.ready.wait(), 30)
            await until("the worker to have looked for work once", lambda: worker.loops >= 1)
            await _send(sender, done)  # the sender registers its catalog: a plain wake-up
            await until("the worker idle", lambda: not worker.active)
            by_name, handed = worker.leased_by_name, worker.handed
            for n in range(3):
                event_id = await _send(sender, done, {"n": n, "text": "grüße \u2603"})
                [run] = await app.runs(event_id=event_id)
                await until("the run to complete", partial(_completed, app, run.run_id))
                assert worker.handed == handed + n + 1
            assert worker.leased_by_name == by_name
            history = await app.engine.read(app.engine.store.get_history, run.run_id)
            starts = [h for h in history if h.kind == "RUN_STARTED"]
            assert [h.worker_id for h in starts] == ["taker"]
    finally:
        sender.close()
        app.close()


async def test_a_worker_that_takes_no_handoffs_offers_none(pg_url: str) -> None:
    """(Its runs are leased by name then: ``test_pg_wakeups.py``, whose workers take none.)
    The switch is the public ``App.make_worker``'s."""
    app, sender, done = _apps(pg_url)
    try:
        worker = app.make_worker(worker_id="leaser", poll_interval=None, handoffs=False)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.ready.wait(), 30)
        await until("the worker to have looked for work once", lambda: worker.loops >= 1)
        for _ in range(2):
            await _send(sender, done)
            await until("the worker idle", lambda: not worker.active)
        assert worker.handed == 0
        with psycopg.connect(pg_url) as conn:
            offers = conn.execute("SELECT slots FROM handoffs").fetchall()
        assert offers == []
        worker.stop()
        await task
    finally:
        sender.close()
        app.close()


async def test_a_stopping_worker_is_handed_nothing_more(pg_url: str) -> None:
    """Its offer is withdrawn as it stops, before its passes in flight end (they end before
    it unregisters); once stopped, its store keeps no lease for it."""
    app, sender, done = _apps(pg_url)
    go = asyncio.Event()

    @app.function(id="slow", trigger=TriggerEvent("slow/please"))
    async def slow(ctx: Context) -> str:
        done.set()
        await go.wait()
        return "slow"

    @sender.function(id="slow", trigger=TriggerEvent("slow/please"))
    async def slow_too(ctx: Context) -> str:
        return "never here"

    def offered() -> list[tuple[Any, ...]]:
        with psycopg.connect(pg_url) as conn:
            return conn.execute("SELECT slots FROM handoffs").fetchall()

    try:
        worker = Worker(app.engine, worker_id="taker", poll_interval=None)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.ready.wait(), 30)
        done.clear()
        await asyncio.to_thread(sender.send, Event("slow/please"))
        await asyncio.wait_for(done.wait(), 30)
        assert worker.handed == 1 and offered() == [(100,)]
        worker.stop()
        await until("the offer withdrawn", lambda: offered() == [])
        assert not task.done()  # the slow pass still runs
        [event_id] = await asyncio.to_thread(sender.send, Event("greet/please"))
        [run] = await sender.runs(event_id=event_id)
        assert run.status == "QUEUED" and run.worker_id is None
        go.set()
        await task
        assert worker.handed == 1
        store = app.engine.store
        assert isinstance(store, HandedLeases)
        store._handoffs.put(  # type: ignore[attr-defined]
            [Handed(["greet", "r9", "taker", "tok", [], []])]
        )
        assert store.take_handed("taker", ["r9"], time.time()) == ([], [])  # it stopped
    finally:
        sender.close()
        app.close()


async def _completed(app: App, run_id: str) -> bool:
    run = await app.get_run(run_id)
    return run is not None and run.status == "COMPLETED"
