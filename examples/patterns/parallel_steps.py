"""Run independent steps at the same time.

``step.parallel`` takes ``(step_id, callable)`` pairs and returns their results in the same
order; ``asyncio.gather`` over ``step.run`` calls does the same. Steps started together are
executed concurrently in one pass and committed together; each is memoized, and retried, on
its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stepline import App, Context, TriggerEvent

app = App("parallel-steps")


async def fetch_profile(user_id: str) -> dict[str, Any]:
    """Stand-in for the profile service."""
    return {"userId": user_id, "name": "Ada"}


async def fetch_orders(user_id: str) -> list[str]:
    """Stand-in for the order service."""
    return ["o-1", "o-2"]


async def fetch_recommendations(user_id: str) -> list[str]:
    """Stand-in for the recommendation service."""
    return ["book", "lamp"]


async def fetch_notifications(user_id: str) -> int:
    """Stand-in for the notification service."""
    return 3


@app.function(id="build-dashboard", trigger=TriggerEvent("dashboard/requested"))
async def build_dashboard(ctx: Context) -> dict[str, Any]:
    """Four lookups, two at a time."""
    user_id = ctx.event.data["userId"]
    profile, orders = await ctx.step.parallel(
        ("fetch-profile", lambda: fetch_profile(user_id)),
        ("fetch-orders", lambda: fetch_orders(user_id)),
    )
    recommendations, unread = await asyncio.gather(
        ctx.step.run("fetch-recommendations", fetch_recommendations, user_id),
        ctx.step.run("fetch-notifications", fetch_notifications, user_id),
    )
    return {
        "profile": profile,
        "orders": orders,
        "recommendations": recommendations,
        "unread": unread,
    }
