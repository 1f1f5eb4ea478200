"""Pause until another event arrives: ``step.wait_for_event``.

Two waits:

* onboarding: after a signup, wait up to 3 days for ``app/onboarding.completed`` of the same
  user (``match="data.userId"`` is short for ``event.data.userId == async.data.userId``);
  nudge the user by email if it never comes.
* payment: after an order, wait up to a day for a ``payment/received`` of the same order that
  covers its amount, with a CEL ``if_`` expression: ``event`` is the run's triggering event,
  ``async`` the incoming one.

Only events sent after the wait began count. On timeout the step returns ``None``. A waiting
run, like a sleeping one, is only rows in the database.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("wait-for-event")


async def send_nudge(email: str) -> None:
    """Stand-in for an email API."""


async def cancel_order(order_id: str) -> str:
    """Stand-in for releasing the order's stock."""
    return f"cancelled {order_id}"


@app.function(id="onboarding-nudge", trigger=TriggerEvent("app/user.signed_up"))
async def onboarding_nudge(ctx: Context) -> dict[str, Any]:
    """Nudge users who have not finished onboarding after 3 days."""
    completed = await ctx.step.wait_for_event(
        "wait-for-onboarding", event="app/onboarding.completed", match="data.userId", timeout="3d"
    )
    if completed is None:
        await ctx.step.run("send-nudge", send_nudge, ctx.event.data["email"])
        return {"onboarded": False}
    return {"onboarded": True, "steps": completed.data.get("steps")}


@app.function(id="await-payment", trigger=TriggerEvent("order/created"))
async def await_payment(ctx: Context) -> dict[str, Any]:
    """Cancel orders that are not paid in full within a day."""
    payment = await ctx.step.wait_for_event(
        "wait-for-payment",
        event="payment/received",
        if_="async.data.orderId == event.data.orderId && async.data.amount >= event.data.amount",
        timeout="1d",
    )
    if payment is None:
        status = await ctx.step.run("cancel-order", cancel_order, ctx.event.data["orderId"])
        return {"status": status}
    return {"status": "paid", "paymentId": payment.data["paymentId"]}
