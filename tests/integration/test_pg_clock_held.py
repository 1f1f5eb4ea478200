"""A worker held by its clock watch (``engine/_clock_watch.py``: this machine's clock beyond the
bound of the database's) writes no lease or registry expiry of its wrong clock.

Its heartbeats went on at its own clock: a clock an hour ahead wrote its registry row and its
passes' leases alive for an hour to the other machines (a crash then left its runs leased an
hour), one an hour behind wrote them expired (its passes in flight taken over by any worker).
They are written at the database's time (this clock plus the skew measured). The clock is a
system clock with an offset the test steps (``tests/steppedclock.py``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.store.postgres import PostgresStore
from steppedclock import SteppedClock

TTL = 3.0  # a heartbeat every real second


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
async def test_a_held_worker_heartbeats_at_the_databases_time(pg_url: str, offset: float) -> None:
    app = App("held-beat", db=pg_url)
    started, release = asyncio.Event(), asyncio.Event()

    @app.function(id="long", trigger=TriggerEvent("held/go"))
    async def long(ctx: Context) -> str:
        async def body() -> str:
            started.set()
            await release.wait()  # in flight while the clock is held
            return "done"

        return await ctx.step.run("body", body)

    clock = SteppedClock()
    engine = app.attach(PostgresStore(pg_url), clock)
    store, watch = engine.store, engine.clock_watch
    worker = Worker(engine, worker_id="held", poll_interval=0.05, lease_ttl=TTL)
    task = asyncio.create_task(worker.run())
    try:
        await worker.ready.wait()
        [event_id] = await app.send_async(Event("held/go"))
        await asyncio.wait_for(started.wait(), 10)
        [run] = await app.runs(event_id=event_id)

        clock.offset = offset  # stepped an hour while the pass runs
        await watch.measure()
        assert watch.refusal is not None
        beats = worker.heartbeats  # the second from now read the clock after the judgement
        await until("two more heartbeats", lambda: worker.heartbeats >= beats + 2)

        now = time.time()  # the database's clock, within the bound of this machine's
        [me] = store.live_workers(now)  # alive now (not expired an hour ago)...
        assert me.worker_id == "held"
        assert store.live_workers(now + 60) == []  # ... and not for an hour more
        [state] = store.queue_states([run.run_id], now)
        assert state.leased  # its pass's lease is alive, not expired an hour ago...
        [state] = store.queue_states([run.run_id], now + 60)
        assert not state.leased  # ... and not held an hour more

        clock.offset = 0.0
        await watch.measure()
        release.set()
        assert (await app.wait_for_run(run.run_id, timeout=30)).status == "COMPLETED"
    finally:
        release.set()
        worker.stop()
        await task
        app.close()
