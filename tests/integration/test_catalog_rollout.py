"""An app's part of the trigger catalog through deploys: a worker starting mid-rollout keeps the
functions the app's other live workers serve, a function a deploy removes stops collecting
events, and nothing an inbox holds keeps its event past the retention.

Before, the latest registration of an app replaced its catalog whatever its other workers
served (an older worker starting after a newer one unhooked the newer functions: events for
them were handed to nobody), and inbox rows nobody would take kept their events forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.integration.test_apps import serving

from stepline import App, CancelOn, Context, Event, TriggerEvent
from stepline.store import MemoryStore
from stepline.testing import MockClock

DAYS_400 = 400 * 24 * 3600


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

    return shop


def shop_without_ship() -> App:
    shop = App("shop")

    @shop.function(id="other", trigger=TriggerEvent("shop/other"))
    async def other(ctx: Context) -> Any:
        return None

    return shop


def billing_app() -> App:
    billing = App("billing")

    @billing.function(id="noop", trigger=TriggerEvent("billing/noop"))
    async def noop(ctx: Context) -> Any:
        return None

    return billing


async def test_an_older_worker_starting_mid_rollout_does_not_unhook_a_live_workers_function() -> (
    None
):
    """Rolling deploy of shop: v2 adds "ship". A v1 worker (no ship) starting after v2's
    must leave ship in the catalog while v2's worker lives."""
    store, clock = MemoryStore(), MockClock()
    v2, v1, billing = shop_app(), shop_without_ship(), billing_app()
    for app in (v2, v1, billing):
        app.attach(store, clock)
    async with serving(v2, "w-v2"), serving(v1, "w-v1"):
        [outcome] = await billing.send_with_outcomes(Event("order/paid", {"n": 1}))
        assert outcome.handed_to == (("shop", "ship"),)
    for app in (v1, v2, billing):
        app.close()


async def test_rows_of_a_function_an_app_no_longer_has_are_skipped_and_do_not_pin_events() -> None:
    """shop drops "ship" in a new deploy while an inbox row for it waits: no worker will ever
    take it; the registration drops it (a skip says why) and the purge can take its event."""
    store, clock = MemoryStore(), MockClock()
    shop, billing = shop_app(), billing_app()
    shop.attach(store, clock)
    billing.attach(store, clock)
    async with serving(shop, "w-shop"):
        pass
    [outcome] = await billing.send_with_outcomes(Event("order/paid", {"n": 1}))
    assert outcome.handed_to == (("shop", "ship"),)
    shop.close()
    shop2 = shop_without_ship()
    shop2.attach(store, clock)
    async with serving(shop2, "w-shop2"):
        pass  # the catalog no longer has ship
    skips = [(s.event_id, s.function_id, s.reason) for s in await billing.skipped()]
    assert skips == [(outcome.event_id, "ship", "unregistered")]
    clock.advance(DAYS_400)
    await billing.purge_runs(before=datetime.fromtimestamp(clock.now(), UTC))
    assert store.get_events([outcome.event_id]) == []
    shop2.close()
    billing.close()


async def test_a_retired_apps_handed_events_are_purged_with_the_retention() -> None:
    """An app that registered once and is gone for good: its inbox rows are never taken; the
    purge drops those older than its cutoff, and their events with them."""
    store, clock = MemoryStore(), MockClock()
    legacy, billing = shop_app(), billing_app()
    legacy.attach(store, clock)
    billing.attach(store, clock)
    async with serving(legacy, "w-legacy"):
        pass
    legacy.close()  # retired
    ids = [(await billing.send_async(Event("order/paid", {"n": n})))[0] for n in range(3)]
    clock.advance(DAYS_400)
    await billing.purge_runs(before=datetime.fromtimestamp(clock.now(), UTC))
    assert store.get_events(ids) == []
    billing.close()
