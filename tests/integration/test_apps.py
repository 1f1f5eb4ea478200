"""Two apps on one database, and a rolling deploy: each worker runs only the functions it has.

issue 6 item 2: runs carried no app id and a worker leased every due run, so a worker failed
(FunctionNotFound, for good) the runs of functions it did not have — another app's, or those a
newer deploy added — and ran another app's function of the same id with its own code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from stepline import App, ConfigError, Context, Debounce, Event, Run, Singleton, TriggerEvent
from stepline.engine.worker import Worker
from stepline.store import MemoryStore, SQLiteStore, Store
from stepline.store import open_store as open_store_at
from stepline.testing import MockClock


def build_app(app_id: str, event: str) -> App:
    """An app whose "charge" (an id the other app uses too) charges, sleeps an hour, then
    invokes its own "report"; its "digest" debounces the same events."""
    app = App(app_id)

    @app.function(id="report", trigger=TriggerEvent(f"{app_id}/report"))
    async def report(ctx: Context) -> Any:
        return {"by": app_id, "n": ctx.event.data["n"]}

    @app.function(id="charge", trigger=TriggerEvent(event))
    async def charge(ctx: Context) -> Any:
        n = ctx.event.data["n"]
        paid = await ctx.step.run("charge", lambda: {"by": app_id, "n": n})
        await ctx.step.sleep("cool-down", "1h")
        made = await ctx.step.invoke("report", function=report, data={"n": n})
        return {"paid": paid, "report": made}

    @app.function(id="digest", trigger=TriggerEvent(event), debounce=Debounce(period="1m"))
    async def digest(ctx: Context) -> Any:
        return {"by": app_id, "events": len(ctx.events)}

    return app


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Stores on one database: SQLite files or PostgreSQL stores opened apart, or one shared
    memory store."""
    shared = MemoryStore()
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None

    def open_one() -> Store:
        if request.param == "memory":
            return shared
        if url is not None:
            return open_store_at(url)
        return SQLiteStore(tmp_path / "shared.db", synchronous="NORMAL")

    return open_one


@asynccontextmanager
async def serving(app: App, worker_id: str) -> AsyncIterator[Worker]:
    async with app.worker(worker_id=worker_id, poll_interval=None) as worker:
        await asyncio.wait_for(worker.ready.wait(), 30)
        yield worker


async def ended(
    app: App, function_id: str, count: int, timeout: float = 30.0, *, all_apps: bool = True
) -> list[Run]:
    deadline = time.monotonic() + timeout
    while True:
        found = await app.runs(function_id=function_id, all_apps=all_apps)
        if len(found) == count and all(r.done for r in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{function_id}: {[(r.run_id, r.status) for r in found]}")
        await asyncio.sleep(0.005)  # real time: the poll interval; the deadline bounds it


async def looked(worker: Worker, times: int = 3) -> None:
    """Return once ``worker`` has looked for work ``times`` more times."""
    target = worker.loops + times
    deadline = time.monotonic() + 30
    while worker.loops < target:
        worker.wake()
        assert time.monotonic() < deadline, "the worker did not look for work"
        await asyncio.sleep(0.001)  # real time: the poll interval; the deadline bounds it


async def test_two_apps_on_one_database_each_run_their_own_functions(
    open_store: Callable[[], Store],
) -> None:
    # issue 6 item 2: two apps on one database are a supported setup
    clock = MockClock()
    shop, billing = build_app("shop", "order/paid"), build_app("billing", "invoice/due")
    shop.attach(open_store(), clock)
    billing.attach(open_store(), clock)
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(serving(shop, "w-shop"))
            await stack.enter_async_context(serving(billing, "w-billing"))
            await shop.send_async([Event("order/paid", {"n": i}) for i in range(3)])
            await billing.send_async([Event("invoice/due", {"n": i}) for i in range(2)])
            shop_charges = await ended(shop, "charge", 5)  # both apps' runs of "charge"
            await ended(shop, "report", 5)
            await ended(shop, "digest", 2)
        for run in shop_charges:
            assert run.status == "COMPLETED", run.error
            app_id = run.app_id
            assert run.worker_id == f"w-{app_id}"
            n = run.output["paid"]["n"]
            assert run.output == {
                "paid": {"by": app_id, "n": n},
                "report": {"by": app_id, "n": n},
            }
        assert sorted(r.app_id for r in shop_charges) == ["billing"] * 2 + ["shop"] * 3
        digests = {r.app_id: r.output for r in await shop.runs(function_id="digest", all_apps=True)}
        assert digests == {
            "shop": {"by": "shop", "events": 1},
            "billing": {"by": "billing", "events": 1},
        }
        for run in await billing.runs(function_id="report"):
            assert (run.status, run.worker_id) == ("COMPLETED", f"w-{run.app_id}")
            assert run.output["by"] == run.app_id
    finally:
        shop.close()
        billing.close()


async def test_a_run_of_a_function_no_live_worker_has_waits_for_one(
    open_store: Callable[[], Store],
) -> None:
    # issue 6 item 2: a rolling deploy — old workers, and new code that added "refund"
    clock = MockClock()
    old = build_app("shop", "order/paid")
    new = build_app("shop", "order/paid")

    @new.function(id="refund", trigger=TriggerEvent("order/refunded"))
    async def refund(ctx: Context) -> Any:
        return await ctx.step.run("refund", lambda: {"refunded": ctx.event.data["n"]})

    old.attach(open_store(), clock)
    new.attach(open_store(), clock)
    try:
        async with serving(old, "w-old") as old_worker:
            [event_id] = await new.send_async(Event("order/refunded", {"n": 7}))
            [queued] = await new.runs(event_id=event_id)
            await looked(old_worker)
            run = await new.get_run(queued.run_id)
            assert run is not None
            assert run.status == "QUEUED"  # the old worker never failed it
            assert (run.waiting_for_worker, run.app_id) == (True, "shop")
            waiting = await old.runs(waiting_for_worker=True)
            assert [r.run_id for r in waiting] == [run.run_id]
            [worker] = await new.live_workers()
            assert (worker.worker_id, worker.app_id) == ("w-old", "shop")
            async with serving(new, "w-new"):
                done = await new.wait_for_run(run.run_id)
                assert await old.runs(waiting_for_worker=True) == []
        assert (done.status, done.output, done.worker_id) == ("COMPLETED", {"refunded": 7}, "w-new")
        assert await new.live_workers() == []  # both stopped: unregistered
        assert [r.run_id for r in await new.runs(waiting_for_worker=True)] == []
    finally:
        old.close()
        new.close()


async def test_flow_control_state_is_per_app_for_functions_of_the_same_id(
    open_store: Callable[[], Store],
) -> None:
    # issue 6 item 2: two apps on one database; keys named by function id alone were shared
    clock = MockClock()
    gate = asyncio.Event()

    def build(app_id: str) -> App:
        app = App(app_id)

        @app.function(
            id="sync",
            trigger=TriggerEvent("account/changed"),
            singleton=Singleton(key="event.data.account"),
            idempotency="event.data.change",
        )
        async def sync(ctx: Context) -> Any:
            await ctx.step.run("wait", gate.wait)
            return app_id

        return app

    shop, billing = build("shop"), build("billing")
    shop.attach(open_store(), clock)
    billing.attach(open_store(), clock)
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(serving(shop, "w-shop"))
            await stack.enter_async_context(serving(billing, "w-billing"))
            event = Event("account/changed", {"account": "a1", "change": "c1"})
            # events are environment-wide: shop's send starts billing's "sync" too (handed to
            # billing's worker), and neither app's idempotency key nor singleton holds the other
            [outcome] = await shop.send_with_outcomes(event)
            assert outcome.handed_to == (("billing", "sync"),)
            gate.set()
            done = await ended(shop, "sync", 2)
        assert sorted((r.app_id, r.status, r.output) for r in done) == [
            ("billing", "COMPLETED", "billing"),
            ("shop", "COMPLETED", "shop"),
        ]
        assert await shop.skipped() == []
    finally:
        gate.set()
        shop.close()
        billing.close()


async def test_pausing_and_cancelling_one_apps_function_leaves_the_other_apps_alone(
    open_store: Callable[[], Store],
) -> None:
    # issue 6 item 2: pause and bulk cancel keyed by function id alone reached the other app's
    # function of the same id ("f paused (2 held)" in a2; `runs cancel --function f` cancelled it)
    clock = MockClock()

    def build(app_id: str) -> App:
        app = App(app_id)

        # an event of its own (events are environment-wide: "go" would start both apps' f)
        @app.function(id="f", trigger=TriggerEvent(f"go/{app_id}"))
        async def f(ctx: Context) -> Any:
            return await ctx.step.run("work", lambda: app_id)

        return app

    a1, a2 = build("a1"), build("a2")
    a1.attach(open_store(), clock)
    a2.attach(open_store(), clock)
    try:
        await a1.pause_function("f")
        await a2.pause_function("f")
        await a2.resume_function("f")  # a2's resume does not resume a1's f
        await a1.send_async(Event("go/a1", {}))
        await a2.send_async(Event("go/a2", {}))
        assert {r.app_id for r in await a1.runs(function_id="f")} == {"a1"}
        assert {r.app_id for r in await a2.runs(function_id="f")} == {"a2"}
        both = await a1.runs(function_id="f", all_apps=True)
        assert sorted(r.app_id for r in both) == ["a1", "a2"]
        async with serving(a1, "w-a1") as w1, serving(a2, "w-a2"):
            [done] = await ended(a2, "f", 1, all_apps=False)
            assert (done.status, done.output) == ("COMPLETED", "a2")
            await looked(w1)
            [held] = await a1.runs(function_id="f")
            assert held.status == "QUEUED"  # a1's f is paused
            await a2.send_async(Event("go/a2", {}))
            await ended(a2, "f", 2, all_apps=False)
            await a2.pause_function("f")
            [queued] = await a2.send_async(Event("go/a2", {}))
            cancelled = await a1.cancel_runs("f")
            assert cancelled == [held.run_id]
            [kept] = await a2.runs(event_id=queued)
            assert kept.status == "QUEUED"  # a1's bulk cancel left a2's run alone
            await a2.resume_function("f")
            await ended(a2, "f", 3, all_apps=False)
        assert (await a1.runs(function_id="f"))[0].status == "CANCELLED"
        with pytest.raises(ConfigError, match="is a run of app 'a2'"):
            await a1.replay_run(kept.run_id)  # another app's run: not by default
        replayed = await a1.replay_run(kept.run_id, all_apps=True)
        assert [r.run_id for r in await a2.runs(function_id="f", status="QUEUED")] == [replayed]
        assert (a1.paused_functions(), a2.paused_functions()) == ({"f"}, set())
        assert a1.paused_functions(all_apps=True) == {"f"}
    finally:
        a1.close()
        a2.close()


async def test_an_event_one_app_sends_starts_another_apps_functions_in_this_process(
    open_store: Callable[[], Store],
) -> None:
    # events are environment-wide, as in Inngest: before, billing's event started only
    # billing's runs, and shop's "ship" on the same event never ran
    clock = MockClock()
    shop, billing = App("shop"), App("billing")

    @shop.function(
        id="ship",
        trigger=TriggerEvent("order/paid", if_="event.data.n > 0"),
        singleton=Singleton(key="event.data.n"),
    )
    async def ship(ctx: Context) -> Any:
        return await ctx.step.run("ship", lambda: {"shipped": ctx.event.data["n"]})

    @billing.function(id="invoice", trigger=TriggerEvent("order/paid"))
    async def invoice(ctx: Context) -> Any:
        return {"invoiced": ctx.event.data["n"]}

    shop.attach(open_store(), clock)
    billing.attach(open_store(), clock)
    try:
        async with serving(shop, "w-shop"), serving(billing, "w-billing"):
            outcomes = await billing.send_with_outcomes(
                [Event("order/paid", {"n": n}) for n in (0, 1, 2)]
            )
            assert [len(o.run_ids) for o in outcomes] == [1, 1, 1]  # billing's own invoices
            assert {o.handed_to for o in outcomes} == {(("shop", "ship"),)}
            await ended(billing, "invoice", 3)
            shipped = await ended(shop, "ship", 2)  # shop's if_ turned n == 0 away
        assert sorted(r.output["shipped"] for r in shipped) == [1, 2]
        assert {(r.app_id, r.worker_id, r.status) for r in shipped} == {
            ("shop", "w-shop", "COMPLETED")
        }
        by_event = {r.event_ids[0]: r.output["shipped"] for r in shipped}
        assert by_event == {outcomes[1].event_id: 1, outcomes[2].event_id: 2}
    finally:
        shop.close()
        billing.close()
