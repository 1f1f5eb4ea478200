"""PostgreSQL: a pass's end wakes its worker to look for due work only when a look may find
some that the worker has not looked for (``Worker._pass_end_looks``). Every commit that makes
work due notifies, the pass's own included (this process's listener hears it too), so a pass
that ends with nothing left behind (the worker's last look took every run it found, of every
function it serves, and did not wait for a slot) leaves the worker asleep: a run another
process sent, started from its notification, used to cost one lease attempt (a write) and one
read of the next due time after its end (1.3 ms of the worker's CPU of ~3.4 per event)."""

from __future__ import annotations

import asyncio

from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker


def _app(pg_url: str, ran: list[int] | None) -> App:
    app = App("ends", db=pg_url)

    async def hello() -> str:
        return "hello"

    @app.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet(ctx: Context) -> str:
        said = await ctx.step.run("hello", hello)
        if ran is not None:
            ran.append(int(ctx.event.data["n"]))
        return str(said)

    return app


async def _stopped(worker: Worker, task: asyncio.Task[None], *apps: App) -> None:
    worker.stop()
    await task
    for app in apps:
        app.close()


def _asleep(worker: Worker) -> bool:
    """Idle and waiting for a wake-up, none pending."""
    return (
        not worker.active
        and not worker._named.claims
        and not worker._wake.is_set()
        and worker._named.sleeping
    )


async def test_a_pass_that_leaves_nothing_behind_ends_without_a_lease_attempt(
    pg_url: str,
) -> None:
    ran: list[int] = []
    app = _app(pg_url, ran)
    # another App on the database (its own engine and store, as another process would have)
    sender = _app(pg_url, None)
    worker = Worker(app.engine, worker_id="w", poll_interval=None)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        for n in range(4):  # the first send registers the sender too (a plain wake-up)
            looked = worker.loops
            await asyncio.to_thread(sender.send, Event("greet/please", {"n": n}))
            await until("the run", lambda n=n: ran == list(range(n + 1)))
            await until("the worker asleep after the pass", lambda: _asleep(worker))
        # the last ones: started from their notifications, their ends looked for nothing
        assert worker.loops == looked
    finally:
        await _stopped(worker, task, app, sender)


async def test_a_pass_end_leases_a_run_sent_while_every_slot_was_busy(pg_url: str) -> None:
    """The run named while the worker had no free slot is looked for as the pass in its slot
    ends (the worker's last wait counted on a pass's end), on a worker that never polls."""
    app = App("ends", db=pg_url)
    sender = _app(pg_url, None)
    release = asyncio.Event()
    ran: list[int] = []

    @app.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet(ctx: Context) -> int:
        n = int(ctx.event.data["n"])
        ran.append(n)
        if n == 0:
            await release.wait()
        return n

    worker = Worker(app.engine, worker_id="w", poll_interval=None, concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        await asyncio.to_thread(sender.send, Event("greet/please", {"n": 0}))
        await until("the first run", lambda: ran == [0])
        await until("the worker asleep beside its pass", lambda: _asleep_busy(worker))
        looked = worker.loops
        await asyncio.to_thread(sender.send, Event("greet/please", {"n": 1}))
        await until(
            "its wake-up taken by the full worker",
            lambda: worker.loops > looked and _asleep_busy(worker),
        )
        assert ran == [0]
        release.set()
        await until("the second run, leased as the first pass ended", lambda: ran == [0, 1])
    finally:
        release.set()
        await _stopped(worker, task, app, sender)


def _asleep_busy(worker: Worker) -> bool:
    """Waiting for a wake-up, none pending, with a pass in its one slot."""
    return bool(worker.active) and not worker._wake.is_set() and worker._named.sleeping


async def test_a_pass_end_leases_a_run_named_while_only_the_spare_slot_was_free(
    pg_url: str,
) -> None:
    """A worker serving two functions keeps its last slot for a function with no pass in it
    (``_spare_slot``): a run of the function whose pass holds the other slot, named while
    only the spare was free, is left due; the pass's end looks for it (its worker never
    polls)."""
    release = asyncio.Event()
    ran: list[str] = []

    def app_of(name: str) -> App:
        app = App("spare-ends", db=pg_url)

        @app.function(id="held", trigger=TriggerEvent("held/please"))
        async def held(ctx: Context) -> str:
            n = str(ctx.event.data["n"])
            if name == "worker":
                ran.append(n)
                if n == "first":
                    await release.wait()
            return n

        @app.function(id="other", trigger=TriggerEvent("other/please"))
        async def other(ctx: Context) -> str:
            return "other"

        return app

    app, sender = app_of("worker"), app_of("sender")
    worker = Worker(app.engine, worker_id="w", poll_interval=None, concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        await asyncio.to_thread(sender.send, Event("held/please", {"n": "first"}))
        await until("the first run", lambda: ran == ["first"])
        await until("the worker asleep beside its pass", lambda: _asleep_busy(worker))
        looked = worker.loops
        await asyncio.to_thread(sender.send, Event("held/please", {"n": "second"}))
        await until(
            "its wake-up taken, the spare kept",
            lambda: worker.loops > looked and _asleep_busy(worker),
        )
        assert ran == ["first"]
        release.set()
        await until("the second run, leased as the first pass ended", lambda: len(ran) == 2)
    finally:
        release.set()
        await _stopped(worker, task, app, sender)
