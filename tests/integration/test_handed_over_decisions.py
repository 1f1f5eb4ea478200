"""A run handed over to another app's function is decided as if at the event's arrival, and a
row that cannot be started never stops the receiving app's workers.

Before, ``Engine.take_inbox`` decided a handed-over run when a worker of the receiving app took
the inbox row: a cancel event ingested between the trigger and the take never cancelled the run
(its cancel matchers did not exist yet), and flow control (rate limit, throttle, debounce,
idempotency) counted the take's time, not the event's. A row whose planning or admission raised
shared the lease job's savepoint: the job failed, the row went back, and the app's workers
leased nothing again, ever (and a planning error was only logged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.integration._ignored import batch_with_cancel_on
from tests.integration.test_apps import ended, serving

from stepline import App, BatchEvents, CancelOn, Context, Debounce, Event, RateLimit, TriggerEvent
from stepline.store import MemoryStore, SQLiteStore, Store
from stepline.store.records import EventIngest, IngestResult
from stepline.testing import MockClock

Stores = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Stores on one database, one per app (the memory store is shared as one object)."""
    if request.param == "memory":
        shared = MemoryStore()
        yield lambda: shared
        return
    if request.param == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "s.db")
        return
    from stepline.store.postgres import PostgresStore

    url: str = request.getfixturevalue("pg_url")
    yield lambda: PostgresStore(url)


def billing_app() -> App:
    billing = App("billing")

    @billing.function(id="noop", trigger=TriggerEvent("billing/noop"))
    async def noop(ctx: Context) -> Any:
        return None

    return billing


def shop_app() -> App:
    shop = App("shop")

    @shop.function(
        id="ship",
        trigger=TriggerEvent("order/paid"),
        cancel_on=CancelOn("order/cancelled", match="data.n"),
    )
    async def ship(ctx: Context) -> Any:
        await ctx.step.sleep("hold", "1h")
        return "shipped"

    @shop.function(id="notify", trigger=TriggerEvent("order/noted"), rate_limit=RateLimit(1, "1h"))
    async def notify(ctx: Context) -> Any:
        return ctx.event.data["n"]

    return shop


async def statuses(app: App, function_id: str, count: int) -> dict[int, str]:
    """The status of each run of ``function_id`` by its event's ``n``, once ``count`` runs are
    settled (sleeping or ended)."""
    deadline = time.monotonic() + 30
    while True:
        runs = await app.runs(function_id=function_id, all_apps=True)
        settled = [r for r in runs if r.status in ("SLEEPING", "CANCELLED", "COMPLETED")]
        if len(settled) >= count:
            found: dict[int, str] = {}
            for run in settled:
                event = await app.get_event(run.event_ids[0])
                assert event is not None
                found[event.data["n"]] = run.status
            return found
        assert time.monotonic() < deadline, [(r.run_id, r.status) for r in runs]
        await asyncio.sleep(0.02)  # real time: a poll of the worker's results, under the deadline


async def until_skipped(app: App, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    while True:
        skips = await app.skipped()
        if len(skips) >= count:
            return skips
        assert time.monotonic() < deadline, skips
        await asyncio.sleep(0.02)  # real time: a poll of the worker's results, under the deadline


async def handed_over(stores: Stores, send: Callable[[App, App, MockClock], Any]) -> App:
    """shop registers, goes down; billing sends (``send``); shop comes back."""
    clock = MockClock()
    shop, billing = shop_app(), billing_app()
    shop.attach(stores(), clock)
    billing.attach(stores(), clock)
    async with serving(shop, "w-shop"):
        pass  # shop's triggers are in the catalog
    await send(shop, billing, clock)
    billing.close()
    return shop


async def test_a_cancel_sent_after_the_trigger_before_the_take_cancels_the_run(
    stores: Stores,
) -> None:
    """order/paid then order/cancelled for order 1 while shop's workers are down (a deploy, a
    crash, the poll interval): the run is cancelled as a direct send's would be. Order 2's
    cancel came before its trigger and order 3's matches another order: both runs go on."""

    async def send(shop: App, billing: App, clock: MockClock) -> None:
        await billing.send_async(Event("order/cancelled", {"n": 2}))
        clock.advance(1)
        for n in (1, 2, 3):
            await billing.send_async(Event("order/paid", {"n": n}))
        clock.advance(1)
        await billing.send_async(Event("order/cancelled", {"n": 1}))
        await billing.send_async(Event("order/cancelled", {"n": 4}))

    shop = await handed_over(stores, send)
    async with serving(shop, "w-shop"):
        found = await statuses(shop, "ship", 3)
    assert {n: status == "CANCELLED" for n, status in found.items()} == {
        1: True,
        2: False,
        3: False,
    }
    # announced as any cancellation, in the same transaction
    [cancelled] = [
        e
        for e in await shop.events(name="inngest/function.cancelled")
        if e.event.data["function_id"] == "ship"
    ]
    assert cancelled.event.data["event"]["data"] == {"n": 1}
    shop.close()


async def test_a_cancel_applied_at_the_take_is_linked_to_its_event(stores: Stores) -> None:
    """The cancel event of a run cancelled at the take lists it as cancelled (``event_runs``,
    what ``stepline events show`` prints), as it would had it cancelled the run directly."""
    sent: list[str] = []

    async def send(shop: App, billing: App, clock: MockClock) -> None:
        await billing.send_async(Event("order/paid", {"n": 1}))
        clock.advance(1)
        sent.extend(await billing.send_async(Event("order/cancelled", {"n": 1})))

    shop = await handed_over(stores, send)
    async with serving(shop, "w-shop"):
        found = await statuses(shop, "ship", 1)
    assert found == {1: "CANCELLED"}
    [run] = await shop.runs(function_id="ship", all_apps=True)
    assert [(r.effect, r.run.run_id) for r in await shop.event_runs(sent[0])] == [
        ("cancelled", run.run_id)
    ]
    shop.close()


async def test_rate_limit_of_handed_over_events_counts_their_arrival(stores: Stores) -> None:
    """Two events two hours apart under a 1/h rate limit, taken together: both start (the
    second was skipped: the take's time counted for both); a third sent a minute after the
    second is skipped."""

    async def send(shop: App, billing: App, clock: MockClock) -> None:
        await billing.send_async(Event("order/noted", {"n": 1}))
        clock.advance(2 * 3600)
        await billing.send_async(Event("order/noted", {"n": 2}))
        clock.advance(60)
        await billing.send_async(Event("order/noted", {"n": 3}))

    shop = await handed_over(stores, send)
    async with serving(shop, "w-shop"):
        found = await statuses(shop, "notify", 2)
        [skip] = await until_skipped(shop, 1)
    assert found == {1: "COMPLETED", 2: "COMPLETED"}
    assert skip.reason == "rate_limit"
    shop.close()


def poisoning(admit_taken: Callable[..., list[IngestResult]]) -> Callable[..., list[IngestResult]]:
    """``admit_taken`` that fails (after writing) for an event with ``poison`` in its data."""

    def poisoned(tx: Any, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
        results = admit_taken(tx, items, now)
        if any(item.event.data.get("poison") for item in items):
            raise RuntimeError("cannot admit this one")
        return results

    return poisoned


async def test_a_row_that_cannot_be_started_is_skipped_and_the_workers_go_on(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One taken row's admission raises every time: it is recorded as a skip with the reason
    and dropped (what it wrote rolled back), the other rows' runs start, and the worker goes
    on leasing (a run shop sends itself afterwards completes)."""
    import stepline.store.memory_tx
    import stepline.store.postgres.tx
    import stepline.store.sqlite.tx

    stores_tx = (stepline.store.memory_tx, stepline.store.sqlite.tx, stepline.store.postgres.tx)
    for module in stores_tx:
        monkeypatch.setattr(module, "admit_taken", poisoning(module.admit_taken))

    async def send(shop: App, billing: App, clock: MockClock) -> None:
        await billing.send_async(Event("order/noted", {"n": 1, "poison": True}))
        clock.advance(2 * 3600)
        await billing.send_async(Event("order/noted", {"n": 2}))

    shop = await handed_over(stores, send)
    async with serving(shop, "w-shop"):
        [skip] = await until_skipped(shop, 1)
        assert await statuses(shop, "notify", 1) == {2: "COMPLETED"}
        clock = shop.engine.clock
        assert isinstance(clock, MockClock)
        clock.advance(2 * 3600)
        await shop.send_async(Event("order/noted", {"n": 3}))
        found = await statuses(shop, "notify", 2)
    assert found == {2: "COMPLETED", 3: "COMPLETED"}
    assert skip.function_id == "notify"
    assert skip.reason.startswith("error: RuntimeError('cannot admit this one')")
    shop.close()


async def test_an_older_handed_over_event_does_not_replace_a_debounces_later_event(
    stores: Stores,
) -> None:
    """Debounce, last event wins: billing's event (n=1) arrives first, shop's own (n=2) ten
    seconds later while shop's workers are down. Taken afterwards, n=1 is older than the
    debounce's event: superseded (before, it replaced n=2 and moved the debounce back)."""
    clock = MockClock()
    shop, billing = App("shop"), billing_app()

    @shop.function(id="settle", trigger=TriggerEvent("order/noted"), debounce=Debounce("1m"))
    async def settle(ctx: Context) -> Any:
        return ctx.event.data["n"]

    shop.attach(stores(), clock)
    billing.attach(stores(), clock)
    async with serving(shop, "w-shop"):
        pass
    await billing.send_async(Event("order/noted", {"n": 1}))
    clock.advance(10)
    await shop.send_async(Event("order/noted", {"n": 2}))
    billing.close()
    async with serving(shop, "w-shop"):
        clock.advance(120)
        [run] = await ended(shop, "settle", 1)
    assert run.output == 2
    shop.close()


async def test_a_batch_filled_at_the_take_is_not_cancelled_by_a_later_event(
    stores: Stores,
) -> None:
    """A batch's run has no ``cancel_on`` (as in Inngest: cancellation pauses only for a run
    that is not a batch's), so there is nothing for the take's later-cancel check to apply: a
    batch filled at the take runs, as it would had its events been sent directly."""
    clock = MockClock()
    shop, billing = App("shop"), billing_app()

    async def pack(ctx: Context) -> Any:
        return sorted(e.data["n"] for e in ctx.events)

    batch = BatchEvents(max_size=2, timeout="1h")
    batch_with_cancel_on(shop, pack, "order/paid", batch, "order/cancelled")

    shop.attach(stores(), clock)
    billing.attach(stores(), clock)
    async with serving(shop, "w-shop"):
        pass
    await billing.send_async([Event("order/paid", {"n": 1}), Event("order/paid", {"n": 2})])
    clock.advance(1)
    await billing.send_async(Event("order/cancelled", {}))
    billing.close()
    async with serving(shop, "w-shop"):
        [run] = await ended(shop, "pack", 1)
    assert (run.status, run.output) == ("COMPLETED", [1, 2])
    shop.close()
