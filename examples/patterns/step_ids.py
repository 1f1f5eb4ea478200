"""Step ids can be reused; give them descriptive names.

The guide ("Step IDs and Memoization")::

    // Step IDs can be reused - Inngest handles counters automatically
    const data = await step.run("fetch-data", () => fetchUserData());
    const more = await step.run("fetch-data", () => fetchOrderData()); // Different execution

    // Use descriptive IDs for clarity
    await step.run("validate-payment", () => validatePayment(event.data.paymentId));
    await step.run("charge-customer", () => chargeCustomer(event.data));
    await step.run("send-confirmation", () => sendEmail(event.data.email));

The second ``"fetch-data"`` of a run is stored as ``"fetch-data:1"``: each occurrence has its own
memoized result, and a replay hands them back in the same order. Ids are how a run finds its
stored results again, so do not rename them once runs are in flight.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("step-ids")


async def fetch_user_data(user_id: str) -> dict[str, Any]:
    """Stand-in for a call to the user service."""
    return {"userId": user_id, "name": "Ada"}


async def fetch_order_data(user_id: str) -> list[dict[str, Any]]:
    """Stand-in for a call to the order service."""
    return [{"orderId": "o-1", "userId": user_id}]


async def validate_payment(payment_id: str) -> dict[str, Any]:
    """Stand-in for a payment provider check."""
    return {"paymentId": payment_id, "valid": True}


async def charge_customer(order: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for charging the customer."""
    return {"chargeId": f"ch-{order['orderId']}", "amount": order["amount"]}


async def send_email(address: str) -> None:
    """Stand-in for an email API."""


@app.function(id="load-account", trigger=TriggerEvent("account/load.requested"))
async def load_account(ctx: Context) -> dict[str, Any]:
    """Two steps with the same id: two executions, two stored results."""
    user_id = ctx.event.data["userId"]
    data = await ctx.step.run("fetch-data", fetch_user_data, user_id)
    more = await ctx.step.run("fetch-data", fetch_order_data, user_id)  # stored as fetch-data:1
    return {"user": data, "orders": more}


@app.function(id="checkout", trigger=TriggerEvent("checkout/submitted"))
async def checkout(ctx: Context) -> dict[str, Any]:
    """Descriptive ids: the run's history reads like the business process."""
    order = ctx.event.data
    await ctx.step.run("validate-payment", validate_payment, order["paymentId"])
    charge: dict[str, Any] = await ctx.step.run("charge-customer", charge_customer, order)
    await ctx.step.run("send-confirmation", send_email, order["email"])
    return charge
