"""A function: a stable id, a trigger, a retry policy and a durable body.

The guide ("Basic Function Structure")::

    const processOrder = inngest.createFunction(
      {
        id: "process-order", // Unique, never change this
        retries: 4,          // Default: 4 retries per step
        concurrency: 10      // Max concurrent executions
      },
      { event: "order/created" }, // Trigger
      async ({ event, step }) => { /* Your durable workflow */ }
    );

``retries`` counts per step: with the default of 4, a failing step is attempted 5 times in all,
with exponential backoff between attempts. ``concurrency=10`` lets at most 10 runs of the
function execute at once; runs over the limit wait in the queue, and sleeping or waiting runs
hold no slot (see ``docs/flow-control/concurrency.md``).
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("basic-function")


async def reserve_inventory(order_id: str) -> dict[str, str]:
    """Stand-in for a call to the warehouse."""
    return {"reservationId": f"res-{order_id}"}


async def charge_customer(order_id: str, amount: float) -> dict[str, Any]:
    """Stand-in for a payment provider (a real one would pass an idempotency key)."""
    return {"chargeId": f"ch-{order_id}", "amount": amount}


@app.function(
    id="process-order",  # unique in the app and stable: runs in flight find their code by it
    trigger=TriggerEvent("order/created"),
    retries=4,  # per step; the default
    concurrency=10,  # at most 10 runs executing at once
)
async def process_order(ctx: Context) -> dict[str, Any]:
    """Reserve the items, then charge the customer; each step's result is stored."""
    order = ctx.event.data
    reservation = await ctx.step.run("reserve-inventory", reserve_inventory, order["orderId"])
    charge = await ctx.step.run(
        "charge-customer", charge_customer, order["orderId"], order["amount"]
    )
    return {**reservation, **charge}
