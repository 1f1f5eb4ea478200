"""A worker held by its clock watch (``engine/_clock_watch.py``: this machine's clock beyond the
bound of the database's) writes no lease or registry expiry of its wrong clock, and is freed
promptly once the clock is put right.

Its heartbeats went on at its own clock: a clock an hour ahead wrote its registry row and its
passes' leases alive for an hour to the other machines (a crash then left its runs leased an
hour), one an hour behind wrote them expired (its passes in flight taken over by any worker).
They are written at the database's time (this clock plus the skew measured). A worker held
measured again only at its heartbeats (every third of its lease TTL): one started while held
registered, and one held leased again, up to that long after the clock was right; it measures
at its looks now, a poll interval apart at most. The clock is a system clock with an offset the
test steps (``tests/steppedclock.py``)."""

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


@pytest.mark.parametrize("measured", [True, False], ids=["measured", "seen-by-its-heartbeat"])
@pytest.mark.parametrize("offset", [3600.0, -3600.0])
async def test_a_held_worker_heartbeats_at_the_databases_time(
    pg_url: str, offset: float, measured: bool
) -> None:
    """``seen-by-its-heartbeat``: no measurement due (the last one just made, as far as the
    watch knows) when the clock steps: the heartbeats wrote the stepped clock's times until the
    next measurement, up to ``CHECK_EVERY`` later. A heartbeat sees the step against the
    monotonic clock, writes the database's time and measures at once."""
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

        await until("a measurement", lambda: watch.skew is not None)
        clock.offset = offset  # stepped an hour while the pass runs
        if measured:
            await watch.measure()
            assert watch.refusal is not None
        else:
            watch.fresh_until = time.monotonic() + 3600  # no measurement due for an hour
        beats = worker.heartbeats  # the second from now read the clock after the step
        await until("two more heartbeats", lambda: worker.heartbeats >= beats + 2)
        await until("the clock judged beyond the bound", lambda: watch.refusal is not None)

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


# a heartbeat every 100 s: none in a test, so none measures the clock again
LONG_TTL = 300.0


def _one_step(pg_url: str, name: str) -> tuple[App, SteppedClock, list[str]]:
    """App ``name``, of one function (on ``name/go``: one step, whose runs it notes in the list),
    on a clock the test steps."""
    app = App(name, db=pg_url)
    ran: list[str] = []

    @app.function(id="once", trigger=TriggerEvent(f"{name}/go"))
    async def once(ctx: Context) -> str:
        return await ctx.step.run("s1", lambda: ran.append("ran") or "ok")

    clock = SteppedClock()
    app.attach(PostgresStore(pg_url), clock)
    return app, clock, ran


async def test_a_worker_waiting_to_register_registers_once_its_clock_is_back(
    pg_url: str,
) -> None:
    """A worker started beyond the bound waits to register; the clock put right, it registers
    at its next look (it measures again at each, a poll interval apart at most), not when its
    heartbeat loop next measures (a third of its lease TTL later)."""
    app, clock, _ = _one_step(pg_url, "held-start")
    clock.offset = 3600.0  # stepped an hour ahead after the store opened
    worker = Worker(app.engine, worker_id="late", poll_interval=0.05, lease_ttl=LONG_TTL)
    task = asyncio.create_task(worker.run())
    try:
        await until("the worker to wait", lambda: worker.clock_held and worker.loops >= 2)
        looked = worker.loops
        await until("the worker to look again", lambda: worker.loops >= looked + 2)
        assert not worker.ready.is_set()  # still refused: measured again, not registered

        clock.offset = 0.0  # put right; nothing else measures it
        await until("the worker to register", worker.ready.is_set, timeout=30)
        assert worker.heartbeats == 0
    finally:
        worker.stop()
        await task
        app.close()


async def test_a_held_worker_leases_again_once_its_clock_is_back(pg_url: str) -> None:
    """A registered worker held by its clock takes no lease; the clock put right, it leases
    again at its next look (it measures again at each), not at its next heartbeat's."""
    app, clock, ran = _one_step(pg_url, "held-lease")
    watch = app.engine.clock_watch
    worker = Worker(app.engine, worker_id="held", poll_interval=0.05, lease_ttl=LONG_TTL)
    task = asyncio.create_task(worker.run())
    try:
        await worker.ready.wait()
        clock.offset = 3600.0
        await watch.measure()
        await until("the worker to be held", lambda: worker.clock_held)
        looked = worker.loops
        await until("the worker to look again", lambda: worker.loops >= looked + 2)
        assert watch.refusal is not None  # measured again at its looks: still refused

        clock.offset = 0.0  # put right; nothing but the worker measures it
        await until("the worker to lease again", lambda: not worker.clock_held, timeout=30)
        [event_id] = await app.send_async(Event("held-lease/go"))
        [run] = await app.runs(event_id=event_id)
        assert (await app.wait_for_run(run.run_id, timeout=30)).status == "COMPLETED"
        assert ran == ["ran"] and worker.heartbeats == 0
    finally:
        worker.stop()
        await task
        app.close()


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
async def test_a_lease_attempt_sees_a_step_not_judged_yet(pg_url: str, offset: float) -> None:
    """The clock steps with no measurement due: the worker's next lease attempts (a poll
    interval apart) wrote their times at the stepped clock, its passes' leases among them (an
    hour behind: expired, taken over by any worker), until a heartbeat saw the step and its
    measurement judged it. A lease attempt looks for the step too (``ClockWatch.stepped``),
    and measures first: held, it writes nothing."""
    app = App("held-attempt", db=pg_url)
    started, release = asyncio.Event(), asyncio.Event()

    @app.function(id="long", trigger=TriggerEvent("held-attempt/go"))
    async def long(ctx: Context) -> str:
        async def body() -> str:
            started.set()
            await release.wait()
            return "done"

        return await ctx.step.run("body", body)

    clock = SteppedClock()
    engine = app.attach(PostgresStore(pg_url), clock)
    store, watch = engine.store, engine.clock_watch
    worker = Worker(engine, worker_id="held", poll_interval=0.05, lease_ttl=LONG_TTL)
    task = asyncio.create_task(worker.run())
    try:
        await worker.ready.wait()
        [event_id] = await app.send_async(Event("held-attempt/go"))
        await asyncio.wait_for(started.wait(), 10)
        [run] = await app.runs(event_id=event_id)
        await until("a measurement", lambda: watch.skew is not None)

        watch.fresh_until = time.monotonic() + 3600  # no measurement due for an hour
        clock.offset = offset
        looked = worker.loops
        await until("two more looks", lambda: worker.loops >= looked + 2)
        assert watch.refusal is not None  # judged at its look, not a heartbeat later
        now = time.time()  # the database's clock
        [state] = store.queue_states([run.run_id], now)
        assert state.leased  # not written an hour expired...
        [state] = store.queue_states([run.run_id], now + LONG_TTL + 60)
        assert not state.leased  # ... nor an hour on

        clock.offset = 0.0
        await watch.measure()
        release.set()
        assert (await app.wait_for_run(run.run_id, timeout=30)).status == "COMPLETED"
        assert worker.heartbeats == 0
    finally:
        release.set()
        worker.stop()
        await task
        app.close()
