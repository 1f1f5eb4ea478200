"""Concurrent senders in one event loop share one ingest verb per transaction (issue 9, event API
throughput): each gets its own results, only after the commit; retried ids are not ingested
twice, even when two retries of one request land in the same group; a failed transaction
fails every sender of its group (on every store: ``store_kind``); and the process's counters
lose no update from threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.errors import StoreUnavailable
from stepline.store.interface import StoreTx
from stepline.testing import TestEngine


@asynccontextmanager
async def writer_held(app: App) -> AsyncIterator[threading.Event]:
    """Holds the group-commit writer in a job until the yielded event is set (or the block
    ends), so the writes queued meanwhile are taken together. The job is awaited from a thread:
    the writer starts draining a loop's jobs only once that loop runs again, so blocking the
    loop here would hold the job back until the timeout."""
    release = threading.Event()
    started = threading.Event()

    def gate(tx: StoreTx) -> None:
        started.set()
        release.wait(30)

    held = app.engine.writer.submit(gate)
    assert await asyncio.to_thread(started.wait, 30), "the writer never took the gate job"
    try:
        yield release
    finally:
        release.set()
        await held


@pytest.fixture
def app() -> App:
    app = App("group-ingest")

    @app.function(id="echo", trigger=TriggerEvent("go"))
    async def echo(ctx: Context) -> Any:
        return ctx.event.data["n"]

    return app


async def test_senders_queued_together_share_one_job_and_get_their_own_results(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    async with make_engine() as t:
        engine = app.engine
        feed = engine.changes.subscribe()  # one change per committed ingestion
        async with writer_held(app) as release:
            sends = [
                asyncio.ensure_future(app.send_async([Event("go", {"n": i}), Event("other")]))
                for i in range(20)
            ]
            await asyncio.sleep(0)  # every send has queued its events
            assert not any(s.done() for s in sends)  # nothing is acknowledged before the commit
            release.set()
            results = await asyncio.gather(*sends)
        ingestions = [len(c.ingested) for c in await feed.get() if c.ingested]
        assert ingestions == [40]  # the 20 senders' events in one ingestion
        assert all(len(ids) == 2 for ids in results)
        stored = await engine.read(engine.store.get_events, [i for ids in results for i in ids])
        assert [e.data.get("n") for e in stored] == [n for i in range(20) for n in (i, None)]
        for i, (go, _) in enumerate(results):
            [run] = await app.runs(event_id=go)
            assert (await t.wait_for_run(run.run_id)).output == i


async def test_retried_ids_in_one_group_are_ingested_once(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    async with make_engine():
        engine = app.engine
        now = engine.clock.now()
        records = [engine.event_record(Event("go", {"n": n}), now, f"seeded-{n}") for n in (1, 2)]
        async with writer_held(app) as release:
            first = asyncio.ensure_future(engine.ingest_records(records, now, retried=True))
            again = asyncio.ensure_future(engine.ingest_records(records, now, retried=True))
            await asyncio.sleep(0)
            release.set()
            a, b = await asyncio.gather(first, again)
        assert [r.internal_id for r in a] == [r.internal_id for r in b] == ["seeded-1", "seeded-2"]
        assert [r.duplicate for r in a] == [False, False]
        assert [r.duplicate for r in b] == [True, True]
        later = await engine.ingest_records(records, now, retried=True)
        assert [r.duplicate for r in later] == [True, True]
        assert len(await app.runs(function_id="echo")) == 2


async def test_a_lost_transaction_fails_every_sender_of_the_group(
    app: App, make_engine: Callable[..., TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_engine():
        engine = app.engine
        store = engine.store
        real = store.transaction
        failing = True

        def transaction() -> Any:
            if failing:
                raise StoreUnavailable("disk on fire", "f.db")
            return real()

        async with writer_held(app) as release:
            monkeypatch.setattr(store, "transaction", transaction)
            if hasattr(store, "optimistic_transaction"):  # SQLite's and PostgreSQL's
                monkeypatch.setattr(store, "optimistic_transaction", transaction)
            sends = [asyncio.ensure_future(app.send_async(Event("go", {"n": i}))) for i in range(3)]
            await asyncio.sleep(0)
            release.set()
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
        assert all(isinstance(o, StoreUnavailable) for o in outcomes)
        assert len({id(o) for o in outcomes}) == 3  # each sender raises its own exception
        failing = False
        assert len(await app.send_async(Event("go", {"n": 9}))) == 1  # the next group commits


def test_counters_lose_no_update_across_threads(tmp_path: Path) -> None:
    # issue 9 item 5: events_accepted was a plain `+=` from every sending thread
    threads, per_thread = 8, 40
    app = App("counters", db=f"sqlite:///{tmp_path / 'c.db'}")
    metrics = app.engine.metrics  # opened here: every thread sends through this engine
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def send() -> None:
        try:
            start.wait(30)
            for i in range(per_thread):
                app.send([Event("other", {"i": i})])
                metrics.step_attempt(0.001, i % 2 == 0)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    try:
        assert errors == []
        assert metrics.events_accepted == threads * per_thread
        half = threads * per_thread // 2
        assert metrics.step_attempts == {"completed": half, "failed": half}
        assert metrics.step_seconds.snapshot()[2] == threads * per_thread
    finally:
        app.close()
