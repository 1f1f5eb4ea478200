"""Idempotency: one run per key per 24 hours, and event ``id`` de-duplication.

See ``docs/flow-control/idempotency.md``. Two kinds of de-duplication:

- consumer side, per function: ``idempotency="event.data.cartId"`` on ``send-checkout-email``
  starts at most one run per cart in 24 hours, whatever the events look like; the others are
  recorded as skipped (reason ``idempotency``). ``audit-checkout``, on the same event without
  the option, runs for every event;
- producer side, per event: an event sent with an ``id`` seen in the last 24 hours is stored
  but starts no run of any function (and resumes no wait).

Run the demo with ``python -m examples.flow.idempotency``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-idempotency")
DAY = 86400


async def send_receipt(cart_id: str) -> str:
    """Stand-in for an email API."""
    return cart_id


@app.function(
    id="send-checkout-email",
    trigger=TriggerEvent("cart/checkout.completed"),
    idempotency="event.data.cartId",
)
async def send_checkout_email(ctx: Context) -> str:
    """At most one receipt per cart per 24 hours."""
    return await ctx.step.run("send-receipt", send_receipt, ctx.event.data["cartId"])


@app.function(id="audit-checkout", trigger=TriggerEvent("cart/checkout.completed"))
async def audit_checkout(ctx: Context) -> str:
    """Every checkout event (no idempotency key)."""
    cart_id: str = ctx.event.data["cartId"]
    return cart_id


async def demo() -> dict[str, Any]:
    clock = MockClock(autojump=False)
    async with TestEngine(app, clock=clock) as t:

        async def checkout(cart_id: str, event_id: str | None = None) -> list[str]:
            """Send a checkout event; the functions it started a run of."""
            event = Event("cart/checkout.completed", {"cartId": cart_id}, id=event_id)
            [stored] = await t.send(event)
            return sorted(r.function_id for r in await t.runs(event_id=stored))

        started = {
            "cart-1": await checkout("cart-1"),
            "cart-1 again": await checkout("cart-1"),
            "cart-2 (id=co-2)": await checkout("cart-2", "co-2"),
            "cart-2 (id=co-2) again": await checkout("cart-2", "co-2"),
        }
        clock.advance(DAY + 1)
        started["cart-1, a day later"] = await checkout("cart-1")
        for label, functions in started.items():
            print(f"{label}: started {functions or 'nothing'}")
        skips = [s.reason for s in await t.app.skipped()]
        print(f"skipped: {skips}")
    return {"started": started, "skipped": skips}


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
