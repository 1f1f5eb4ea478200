"""Retries: the default policy, a custom count, and ``ctx.attempt``.

The guide ("Default Retry Behavior", "Custom Retry Configuration")::

    // 5 total attempts (1 initial + 4 retries) per step
    // Exponential backoff with jitter; independent retry counters per step

    const reliableFunction = inngest.createFunction(
      { id: "reliable-function", retries: 10 }, // Up to 10 retries per step
      { event: "critical/task" },
      async ({ event, step, attempt }) => {
        // attempt is the function-level attempt counter (0-indexed)
        // It tracks retries for the currently executing step, not the overall function
        if (attempt > 5) { /* Different logic for later attempts of the current step */ }
      }
    );

A step that raises is retried after a backoff that doubles each time (attempt *n* waits between
half and all of 2·2^n seconds, at most an hour); each step has its own counter, so a flaky
first step does not use up the retries of the next one. ``ctx.attempt`` is the 0-based attempt
of the step now executing: read it inside the step body to change course on late attempts.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("retries")


async def fetch_stock(sku: str) -> int:
    """Stand-in for a flaky warehouse API."""
    return 7


async def update_listing(sku: str, stock: int) -> dict[str, Any]:
    """Stand-in for the storefront API."""
    return {"sku": sku, "stock": stock}


async def deliver_via_primary(task: dict[str, Any]) -> str:
    """Stand-in for the usual delivery path."""
    return "primary"


async def deliver_via_backup(task: dict[str, Any]) -> str:
    """Stand-in for a slower path that is tried once the primary keeps failing."""
    return "backup"


@app.function(id="sync-inventory", trigger=TriggerEvent("inventory/sync.requested"))
async def sync_inventory(ctx: Context) -> dict[str, Any]:
    """Default policy: each step gets up to 5 attempts, with its own counter."""
    sku = ctx.event.data["sku"]
    stock = await ctx.step.run("fetch-stock", fetch_stock, sku)
    return await ctx.step.run("update-listing", update_listing, sku, stock)


@app.function(id="reliable-function", trigger=TriggerEvent("critical/task"), retries=10)
async def reliable_function(ctx: Context) -> str:
    """Up to 11 attempts; from the 7th on (``ctx.attempt > 5``) use the backup path."""

    async def deliver() -> str:
        if ctx.attempt > 5:  # later attempts of this step
            return await deliver_via_backup(ctx.event.data)
        return await deliver_via_primary(ctx.event.data)

    return await ctx.step.run("deliver", deliver)
