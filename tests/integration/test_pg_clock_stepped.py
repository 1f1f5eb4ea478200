"""A clock stepped while the process runs (an NTP step, a VM resumed) is caught on PostgreSQL,
not only when the store opens: lease expiries and due times written by different machines are
compared with each other. The worker's periodic check (``ClockWatch.check``, called here
directly: no real-time wait) finds this machine's clock beyond the bound, says so in the log
with the measured skew, takes no new lease and refuses sends (``ClockSkewError``) until the
clock is back within the bound. The clock is a system clock with an offset the test steps."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections.abc import Callable

import pytest
from _polling import until

from stepline import App, ClockSkewError, Context, Event, TriggerCron, TriggerEvent
from stepline.engine.worker import Worker
from stepline.store.postgres import PostgresStore
from stepline.store.records import CronRow
from steppedclock import SteppedClock


def _twins(pg_url: str, name: str, bodies: list[str]) -> tuple[App, App]:
    """Two apps ``name`` of one function (on ``name/go``, its step's body noted in ``bodies``):
    a worker's and a sender's."""
    apps = App(name, db=pg_url), App(name, db=pg_url)
    for app in apps:

        @app.function(id="once", trigger=TriggerEvent(f"{name}/go"))
        async def run_once(ctx: Context) -> str:
            return await ctx.step.run("s1", lambda: bodies.append("ran") or "ok")

    return apps


def _ahead(message: str) -> float:
    """The seconds this machine's clock is ahead of the database's, as ``message`` says."""
    found = re.search(r"clock is ([+-][0-9.]+) s from the database", message)
    assert found is not None, message
    return float(found.group(1))


async def test_a_clock_stepped_beyond_the_bound_stops_leases_and_sends(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    bodies: list[str] = []
    skewed, sender = _twins(pg_url, "skew", bodies)
    clock = SteppedClock()
    engine = skewed.attach(PostgresStore(pg_url), clock)
    worker = Worker(engine, worker_id="skewed", poll_interval=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await worker.ready.wait()
        await asyncio.to_thread(sender.send, [])  # its catalog read: it hands runs to workers
        await engine.clock_watch.measure()
        assert engine.clock_watch.refusal is None  # within the bound: nothing said

        clock.offset = 5.0  # this machine's clock stepped 5 s ahead
        with caplog.at_level(logging.WARNING, logger="stepline"):
            await engine.clock_watch.measure()
            # its loop saw it and withdrew its offer of hand-offs: no sender hands it runs (a
            # lease attempt made before the measurement may still end meanwhile)
            await until("the worker to withdraw its offer", lambda: worker.clock_held)
        [said] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert _ahead(said.getMessage()) == pytest.approx(5.0, abs=0.5)
        assert "no new lease" in said.getMessage()
        with pytest.raises(ClockSkewError) as refused:
            await skewed.send_async(Event("skew/go"))
        assert refused.value.skew == pytest.approx(-5.0, abs=0.5)
        assert _ahead(str(refused.value)) == pytest.approx(5.0, abs=0.5)

        # a run due, sent by a machine within the bound: this worker does not lease it
        looked = worker.loops
        event_ids = [await asyncio.to_thread(sender.send, Event("skew/go")) for _ in range(3)]
        await until("the skewed worker to look twice", lambda: worker.loops >= looked + 2)
        runs = [run for [event_id] in event_ids for run in await sender.runs(event_id=event_id)]
        assert [run.status for run in runs] == ["QUEUED"] * 3 and bodies == []
        # nor were they handed to it by the sender (its offer was withdrawn): no lease holds them
        states = engine.store.queue_states([run.run_id for run in runs], time.time())
        assert [state.leased for state in states] == [False] * 3

        clock.offset = 0.0  # back within the bound: leases and sends again
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stepline"):
            await engine.clock_watch.measure()
        assert engine.clock_watch.refusal is None
        assert any("back within" in r.getMessage() for r in caplog.records)

        async def completed() -> bool:
            done = await sender.runs(status="COMPLETED")
            return len(done) >= 3

        await until("the run to complete", completed, timeout=30)
        await skewed.send_async(Event("skew/go"))
    finally:
        worker.stop()
        await task
        skewed.close()
        sender.close()


async def test_a_worker_started_beyond_the_bound_waits_to_register(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker started while this machine's clock is beyond the bound wrote its start-up
    anyway: its registry row with an expiry of this clock's (alive for an hour to the other
    machines, 1 h ahead), its crons' next fire times (``0 * * * *`` at 21:30 written as 23:00:
    the 22:00 run skipped). It writes nothing and is not ready until the clock is back within
    the bound, and says why it waits."""
    app = App("skew-start", db=pg_url)

    @app.function(id="hourly", trigger=TriggerCron("0 * * * *"))
    async def hourly(ctx: Context) -> str:
        return "ok"

    clock = SteppedClock()
    engine = app.attach(PostgresStore(pg_url), clock)
    store, served = engine.store, engine.served

    def crons() -> list[CronRow]:
        """Its cron schedules written (each with its next fire time)."""
        with store.transaction() as tx:
            return tx.due_crons(time.time() + 10 * 86400, served)

    clock.offset = 3600.0  # stepped an hour ahead after the store opened
    worker = Worker(engine, worker_id="late", poll_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="stepline"):
        task = asyncio.create_task(worker.run())
    try:
        with caplog.at_level(logging.WARNING, logger="stepline"):
            await until("the worker to look twice", lambda: worker.loops >= 2)
        assert store.live_workers(time.time()) == []  # no row: no expiry of this clock's
        assert await asyncio.to_thread(crons) == []  # no next fire time of this clock's
        assert not worker.ready.is_set()
        assert engine.clock_watch.refusal is not None  # measured before its first write
        [waits] = [r.getMessage() for r in caplog.records if "late" in r.getMessage()]
        assert "waits" in waits and "beyond the bound" in waits

        clock.offset = 0.0  # back within the bound: it starts
        await engine.clock_watch.measure()
        await worker.ready.wait()
        now = time.time()
        [me] = store.live_workers(now)
        assert me.worker_id == "late" and me.expires_at <= now + worker.lease_ttl
        [cron] = await asyncio.to_thread(crons)
        assert now < cron.next_at <= now + 3600  # the next hour, not the one after
    finally:
        worker.stop()
        await task
        app.close()


async def test_a_refusal_with_no_worker_measuring_is_measured_again_by_the_next_send(
    pg_url: str,
) -> None:
    """A process whose workers stopped while its clock was beyond the bound (or that sends
    only): nothing measured again, and its sends were refused for ever after the clock came
    back. A send refused by a judgement older than ``CHECK_EVERY`` measures again first."""
    app, clock = _sender(pg_url)
    watch = app.engine.clock_watch
    try:
        clock.offset = 5.0
        await watch.measure()
        assert watch.refusal is not None
        with pytest.raises(ClockSkewError):  # judged just now: not measured again
            await app.send_async(Event("skew/go"))
        clock.offset = 0.0  # back within the bound; no worker measures
        with pytest.raises(ClockSkewError):  # the judgement is recent: it stands
            await app.send_async(Event("skew/go"))
        watch.fresh_until = time.monotonic()  # the judgement now CHECK_EVERY old
        await app.send_async(Event("skew/go"))
        assert watch.refusal is None
        clock.offset = 5.0
        await watch.measure()
        clock.offset = 0.0
        watch.fresh_until = time.monotonic()
        await asyncio.to_thread(app.send, Event("skew/go"))  # the same without an event loop
        assert watch.refusal is None
    finally:
        app.close()


def _sender(pg_url: str) -> tuple[App, SteppedClock]:
    """An app with no worker (it only sends) on a clock the test steps."""
    app = App("skew-sender", db=pg_url)

    @app.function(id="once", trigger=TriggerEvent("skew/go"))
    async def run_once(ctx: Context) -> str:
        return "ok"

    clock = SteppedClock()
    app.attach(PostgresStore(pg_url), clock)
    return app, clock


async def test_a_process_that_only_sends_measures_again_beside_its_sends(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with no worker (``stepline server --no-worker``, an app that only sends) was
    measured at open only: a clock stepped later wrote its times into every send, never
    refused. A send whose judgement is ``CHECK_EVERY`` old has it measured again beside it,
    not waited for (the send goes on), and the sends after are judged by it."""
    app, clock = _sender(pg_url)
    watch, store = app.engine.clock_watch, app.engine.store
    measuring, answer = threading.Event(), threading.Event()
    skew: Callable[..., float] = store.clock_skew  # type: ignore[attr-defined]

    def slow_skew(now: Callable[[], float] | None = None) -> float:
        measuring.set()
        answer.wait(10)  # a round trip that ends when the test says
        return skew(now)

    try:
        await watch.measure()
        clock.offset = 5.0  # stepped after its last measurement
        await app.send_async(Event("skew/go"))  # judged within the bound just now: trusted
        monkeypatch.setattr(store, "clock_skew", slow_skew)
        for send in (app.send_async, functools.partial(asyncio.to_thread, app.send)):
            watch.fresh_until = time.monotonic()  # as if measured CHECK_EVERY ago
            measuring.clear()
            answer.clear()
            await send(Event("skew/go"))  # not held by the measurement it started
            await until("a measurement", measuring.is_set)
            answer.set()
            await until("the clock judged beyond the bound", lambda: watch.refusal is not None)
            with pytest.raises(ClockSkewError):
                await send(Event("skew/go"))
            clock.offset = 0.0
            await watch.measure()
            assert watch.refusal is None
            clock.offset = 5.0
    finally:
        answer.set()
        app.close()


async def test_a_send_on_a_judgement_far_too_old_measures_first(pg_url: str) -> None:
    """A process that sends now and then: a judgement of long ago is measured again before
    the send (which is refused when the clock stepped meanwhile)."""
    app, clock = _sender(pg_url)
    watch = app.engine.clock_watch
    try:
        for send in (app.send_async, functools.partial(asyncio.to_thread, app.send)):
            clock.offset = 0.0
            await watch.measure()
            clock.offset = 5.0  # stepped since
            watch.fresh_until = time.monotonic() - 3600  # as if measured an hour ago
            with pytest.raises(ClockSkewError):
                await send(Event("skew/go"))
    finally:
        app.close()


async def test_sends_made_while_a_judgement_far_too_old_is_measured_wait_for_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send on a judgement of long ago measures before it; the sends made while that
    measurement is in flight (a burst after a quiet spell) wait for it too, on both send
    paths, and start no other: they went on, judged by the old judgement (the measurement had
    moved ``fresh_until`` as it began), and wrote the stepped clock's times."""
    app, clock = _sender(pg_url)
    watch, store = app.engine.clock_watch, app.engine.store
    measured: list[bool] = []
    answer = threading.Event()
    skew: Callable[..., float] = store.clock_skew  # type: ignore[attr-defined]

    def slow_skew(now: Callable[[], float] | None = None) -> float:
        measured.append(True)
        answer.wait(10)  # a round trip that ends when the test says
        return skew(now)

    try:
        await watch.measure()
        clock.offset = 5.0  # stepped since
        watch.fresh_until = time.monotonic() - 3600  # as if measured an hour ago
        monkeypatch.setattr(store, "clock_skew", slow_skew)
        first = asyncio.create_task(app.send_async(Event("skew/go")))
        await until("the measurement before the send", lambda: bool(measured))
        meanwhile = [
            asyncio.create_task(asyncio.to_thread(app.send, Event("skew/go"))),
            asyncio.create_task(app.send_async(Event("skew/go"))),
        ]
        await asyncio.sleep(0)  # the send_async's first step: judged, or waiting, by now
        answer.set()
        for send in (meanwhile[1], first, meanwhile[0]):
            with pytest.raises(ClockSkewError):
                await send
        assert len(measured) == 1
    finally:
        answer.set()
        app.close()


async def test_replays_cancels_and_removals_are_refused_beyond_the_bound(pg_url: str) -> None:
    """A replay writes a new run due at this machine's clock, a cancel its run's end and the
    events announcing it (which start runs, due at that clock too), an app's removal judges
    its workers alive by expiries other machines wrote: refused as a send is while the clock
    is beyond the bound (nothing written), done again once it is back."""
    app, clock = _sender(pg_url)
    watch = app.engine.clock_watch
    try:
        [event_id] = await app.send_async(Event("skew/go"))
        [run] = await app.runs(event_id=event_id)
        engine = app.engine  # its triggers in the catalog (a worker of it registered once)
        rows, now = engine.trigger_rows(), clock.now()
        await engine.writer.write(lambda tx: tx.sync_triggers(app.id, rows, now))
        clock.offset = 5.0  # stepped since
        await watch.measure()
        assert watch.refusal is not None
        with pytest.raises(ClockSkewError):
            await app.replay_run(run.run_id)
        with pytest.raises(ClockSkewError):
            await app.cancel_run(run.run_id)
        with pytest.raises(ClockSkewError):
            await app.cancel_runs("once")
        # a removal judges the app's workers alive by their expiry, written at their clocks
        with pytest.raises(ClockSkewError):
            await app.remove_app("skew-sender")
        assert [r.run_id for r in await app.runs()] == [run.run_id]  # nothing written
        assert [a.app_id for a in await app.apps()] == ["skew-sender"]
        clock.offset = 0.0
        await watch.measure()
        assert await app.cancel_run(run.run_id)
        assert await app.replay_run(run.run_id)
        assert (await app.remove_app("skew-sender")).triggers == 1
    finally:
        app.close()


async def test_a_worker_whose_clock_is_ahead_starts_the_runs_handed_to_it(pg_url: str) -> None:
    """A worker whose clock is ahead of its sender's by more than half its lease TTL, within
    the bound (or before the watch caught it), read every lease handed to it as over half its
    TTL old and dropped it: the run waited for the lease to expire. Such a hand-off is given
    back now and leased again at once with a fresh read (the exact way a stale one takes)."""
    bodies: list[str] = []
    skewed, sender = _twins(pg_url, "ahead", bodies)
    clock = SteppedClock()
    clock.offset = 40.0  # within the store's bound of 60 s; past half the lease TTL
    engine = skewed.attach(PostgresStore(pg_url, max_clock_skew=60.0), clock)
    worker = Worker(engine, worker_id="ahead", poll_interval=0.1, lease_ttl=60.0)
    task = asyncio.create_task(worker.run())
    try:
        await worker.ready.wait()
        await asyncio.to_thread(sender.send, [])  # its catalog read: it hands runs to workers
        [event_id] = await asyncio.to_thread(sender.send, Event("ahead/go"))

        async def completed() -> bool:
            [run] = await sender.runs(event_id=event_id)
            return run.status == "COMPLETED"

        # (its lease, dropped, would have lived 60 s; the deadline is only the test's bound)
        await until("the handed run to complete", completed, timeout=20)
        assert bodies == ["ran"]
    finally:
        worker.stop()
        await task
        skewed.close()
        sender.close()
