"""The app the dashboard tests (and the screenshot script) serve: a few functions that complete,
sleep, wait for an event, fail, and hold on flow control."""

from __future__ import annotations

from typing import Any

import stepline
from stepline import App, Context, NonRetriableError

app = App("shop")


@app.function(
    id="process-order",
    trigger=stepline.TriggerEvent("order/created", if_="event.data.amount > 0"),
    concurrency=[stepline.Concurrency(limit=5, key="event.data.customer")],
)
async def process_order(ctx: Context) -> dict[str, Any]:
    async def reserve() -> dict[str, Any]:
        return {"reserved": True, "items": ctx.event.data.get("items", 1)}

    async def charge() -> dict[str, Any]:
        return {"charged": ctx.event.data["amount"], "currency": "EUR"}

    stock = await ctx.step.run("reserve-stock", reserve)
    payment = await ctx.step.run("charge-card", charge)
    return {"order": ctx.event.data.get("orderId"), "stock": stock, "payment": payment}


@app.function(id="send-reminder", trigger=stepline.TriggerEvent("reminder/scheduled"))
async def send_reminder(ctx: Context) -> str:
    await ctx.step.run("prepare", lambda: {"to": ctx.event.data.get("email", "a@example.com")})
    await ctx.step.sleep("wait-a-day", "1d")
    return "sent"


@app.function(
    id="await-approval",
    trigger=stepline.TriggerEvent("expense/submitted"),
    cancel_on=[stepline.CancelOn("expense/withdrawn", match="data.expenseId")],
)
async def await_approval(ctx: Context) -> Any:
    approved = await ctx.step.wait_for_event(
        "approval", event="expense/approved", match="data.expenseId", timeout="2d"
    )
    return {"approved": approved is not None}


@app.function(id="sync-inventory", trigger=stepline.TriggerEvent("inventory/sync"), retries=0)
async def sync_inventory(ctx: Context) -> Any:
    rows = await ctx.step.run("load-rows", lambda: [{"sku": "A-1", "qty": 3}])

    def push() -> None:
        raise NonRetriableError(f"warehouse API refused {len(rows)} rows (HTTP 422)")

    await ctx.step.run("push-rows", push)
    return "synced"


@app.function(
    id="nightly-report",
    trigger=stepline.TriggerCron("0 3 * * *"),
    throttle=stepline.Throttle(limit=1, period="1m"),
)
async def nightly_report(ctx: Context) -> str:
    return "ok"
