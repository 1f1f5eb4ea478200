"""Event triggers, with an optional CEL filter.

The guide ("Event Triggers")::

    // Single event trigger
    { event: "user/signup" }

    // Event with conditional filter
    { event: "user/action", if: 'event.data.action == "purchase" && event.data.amount > 100' }

The filter is compiled when the function is defined (an invalid one raises ``ExpressionError``
there). An event whose data lacks a field sees it as null, so ``event.data.amount > 100`` is
simply false for it: the event is stored but starts no run of this function.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("event-filter")


async def send_welcome_email(email: str) -> None:
    """Stand-in for an email API."""


async def add_loyalty_points(user_id: str, amount: float) -> int:
    """Stand-in for the loyalty service: one point per 10 spent."""
    return int(amount // 10)


@app.function(id="welcome-user", trigger=TriggerEvent("user/signup"))
async def welcome_user(ctx: Context) -> None:
    """Every ``user/signup`` event starts a run."""
    await ctx.step.run("send-welcome-email", send_welcome_email, ctx.event.data["email"])


@app.function(
    id="reward-large-purchase",
    trigger=TriggerEvent(
        "user/action", if_='event.data.action == "purchase" && event.data.amount > 100'
    ),
)
async def reward_large_purchase(ctx: Context) -> dict[str, Any]:
    """Only purchases over 100 start a run."""
    data = ctx.event.data
    points = await ctx.step.run("add-points", add_loyalty_points, data["userId"], data["amount"])
    return {"userId": data["userId"], "points": points}
