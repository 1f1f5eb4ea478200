"""Producer-side idempotency: give events an ``id``.

The guide ("Event-Level Idempotency (Producer Side)")::

    // Prevent duplicate events with custom ID
    await inngest.send({
      id: `checkout-completed-${cartId}`, // 24-hour deduplication
      name: "cart/checkout.completed",
      data: { cartId, email: "user@example.com" }
    });

An event sent with an ``id`` already seen in the last 24 hours is accepted and stored but
starts no run, so a producer may retry a send (or a user double-click) safely. Derive the id
from the business fact the event records, not from the time of sending.

The consumer side of the guide is an option of the function:
``@app.function(..., idempotency="event.data.cartId")`` starts at most one run per cart in 24
hours, whatever ids the events carry; ``examples/flow/idempotency.py`` and
``docs/flow-control/idempotency.md`` show both sides together.
"""

from __future__ import annotations

from stepline import App, Context, Event, TriggerEvent

app = App("event-idempotency")


def checkout_completed(cart_id: str, email: str) -> Event:
    """The event for a completed checkout; its id makes re-sending it harmless."""
    return Event(
        name="cart/checkout.completed",
        data={"cartId": cart_id, "email": email},
        id=f"checkout-completed-{cart_id}",
    )


async def complete_checkout(cart_id: str, email: str) -> list[str]:
    """Announce a checkout (from your web handler); safe to call more than once."""
    return await app.send_async(checkout_completed(cart_id, email))


async def send_receipt(email: str, cart_id: str) -> None:
    """Stand-in for an email API."""


@app.function(id="send-checkout-email", trigger=TriggerEvent("cart/checkout.completed"))
async def send_checkout_email(ctx: Context) -> str:
    """Runs once per checkout, however many times the producer sent the event."""
    data = ctx.event.data
    cart_id: str = data["cartId"]
    await ctx.step.run("send-receipt", send_receipt, data["email"], cart_id)
    return cart_id
