"""PostgreSQL wake-ups across processes: a commit that makes work due sends NOTIFY; a listening
store wakes its workers, so a worker that never polls still starts runs another process sent."""

from __future__ import annotations

import asyncio
import threading

from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.store.postgres import PostgresStore


async def test_a_commit_that_makes_work_due_wakes_the_watchers(pg_url: str) -> None:
    watcher, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    watcher.migrate()
    woken = threading.Event()
    stop = watcher.watch(lambda named: woken.set())
    try:
        await until("the listener to say it listens", woken.is_set)  # woken once connected
        woken.clear()
        with sender.transaction() as tx:
            tx.set_paused("f", True, "app")  # may change what is due: a wake-up
        await until("the notification", woken.is_set)
    finally:
        stop()
        watcher.close()
        sender.close()


async def test_a_worker_that_never_polls_starts_a_run_sent_by_another_process(
    pg_url: str,
) -> None:
    app = App("wakeups", db=pg_url)
    done = asyncio.Event()

    @app.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet(ctx: Context) -> str:
        done.set()
        return "hello"

    # the sender: another App on the same database (its own engine and store, as another
    # process would have), so only PostgreSQL's NOTIFY can wake the worker
    sender = App("wakeups", db=pg_url)

    @sender.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet_too(ctx: Context) -> str:
        return "never here"

    try:
        async with app.worker(worker_id="listener", poll_interval=None) as worker:
            await asyncio.wait_for(worker.ready.wait(), 30)
            await until("the worker to have looked for work once", lambda: worker.loops >= 1)
            await asyncio.to_thread(sender.send, Event("greet/please"))
            await asyncio.wait_for(done.wait(), 30)
            # a notification that names new runs: an idle worker leases them by name (one round
            # trip). A plain one meanwhile (the sender registering its app, a pass ending, the
            # listener connecting) makes it look for any work instead: sent again until named
            for _ in range(20):
                if worker.leased_by_name:
                    break
                await until("the worker idle", lambda: not worker.active)
                done.clear()
                await asyncio.to_thread(sender.send, Event("greet/please"))
                await asyncio.wait_for(done.wait(), 30)
            assert worker.leased_by_name >= 1
    finally:
        sender.close()
        app.close()
