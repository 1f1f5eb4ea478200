"""A small shop: an order flow made of durable steps.

Run it with::

    stepline dev examples.shop:app --send order/created \\
        --data '{"orderId": "o-1", "amount": 120}' --exit-when-done

``process-order`` validates the order, reserves stock, waits a moment, charges the customer and
announces ``order/processed``, which starts ``send-receipt``. Each step's result is stored: if the
worker stops half-way, the run resumes after the last finished step instead of charging twice.
"""

from __future__ import annotations

from typing import Any

import stepline
from stepline import App, Context, Event, NonRetriableError

app = App("shop")


def validate(order: dict[str, Any]) -> dict[str, Any]:
    """Check the order; a bad order is not worth retrying."""
    if not order.get("orderId"):
        raise NonRetriableError("the order has no orderId")
    return {"orderId": order["orderId"], "amount": order["amount"]}


def reserve_inventory(order_id: str) -> dict[str, str]:
    """Pretend to reserve the items with the warehouse."""
    return {"reservation": f"res-{order_id}"}


def charge(order_id: str, amount: float) -> dict[str, Any]:
    """Pretend to charge the customer's card (a real one would pass an idempotency key)."""
    return {"chargeId": f"ch-{order_id}", "amount": amount}


@app.function(
    id="process-order",
    trigger=stepline.TriggerEvent("order/created", if_="event.data.amount > 0"),
)
async def process_order(ctx: Context) -> dict[str, Any]:
    """Validate, reserve, charge, and announce the processed order."""
    order = await ctx.step.run("validate", validate, ctx.event.data)
    reservation = await ctx.step.run("reserve-inventory", reserve_inventory, order["orderId"])
    await ctx.step.sleep("settle", "1s")
    payment = await ctx.step.run("charge", charge, order["orderId"], order["amount"])
    await ctx.step.send_event("announce", Event(name="order/processed", data={**order, **payment}))
    return {"orderId": order["orderId"], **reservation, **payment}


@app.function(id="send-receipt", trigger=stepline.TriggerEvent("order/processed"))
async def send_receipt(ctx: Context) -> dict[str, str]:
    """Email the receipt (here: log it)."""
    ctx.logger.info("receipt for order %s sent", ctx.event.data["orderId"])
    return {"sent": ctx.event.data["orderId"]}
