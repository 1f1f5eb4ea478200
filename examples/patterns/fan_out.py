"""Fan out: send one event per item, each handled by its own run.

The guide suggests breaking big functions into smaller ones connected with ``step.sendEvent()``.
Here a weekly digest loads its subscribers, then sends one ``digest/user.requested`` event per
subscriber; each starts its own ``send-user-digest`` run, retried and recorded on its own.

``step.send_event`` is a step: the events (and the runs they start) are committed together with
the step's result, once. A replay returns the stored event ids and sends nothing again.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, Event, TriggerEvent

app = App("fan-out")


async def load_subscribers() -> list[dict[str, str]]:
    """Stand-in for a database query."""
    return [
        {"id": "u-1", "email": "ada@example.com"},
        {"id": "u-2", "email": "grace@example.com"},
        {"id": "u-3", "email": "alan@example.com"},
    ]


async def build_digest(user_id: str) -> dict[str, Any]:
    """Stand-in for assembling one user's digest."""
    return {"userId": user_id, "items": 5}


async def send_email(address: str, digest: dict[str, Any]) -> None:
    """Stand-in for an email API."""


async def mark_sent(week: str, count: int) -> None:
    """Stand-in for recording that the week's digest went out."""


@app.function(id="weekly-digest", trigger=TriggerEvent("digest/weekly.requested"))
async def weekly_digest(ctx: Context) -> dict[str, int]:
    """Start one digest run per subscriber."""
    subscribers = await ctx.step.run("load-subscribers", load_subscribers)
    events = [
        Event(name="digest/user.requested", data={"userId": s["id"], "email": s["email"]})
        for s in subscribers
    ]
    event_ids = await ctx.step.send_event("fan-out", events)
    await ctx.step.run("mark-sent", mark_sent, ctx.event.data["week"], len(event_ids))
    return {"sent": len(event_ids)}


@app.function(id="send-user-digest", trigger=TriggerEvent("digest/user.requested"))
async def send_user_digest(ctx: Context) -> str:
    """Build and send one subscriber's digest."""
    user_id: str = ctx.event.data["userId"]
    digest = await ctx.step.run("build-digest", build_digest, user_id)
    await ctx.step.run("send-email", send_email, ctx.event.data["email"], digest)
    return user_id
