"""Pause a run: ``step.sleep`` and ``step.sleep_until``.

A trial reminder: welcome the user, wait a week, send tips, then wait until the trial's end
date (from the event) to say it ended. ``step.sleep`` takes a duration (``"7d"``, ``"1h30m"``,
a ``timedelta``, seconds); ``step.sleep_until`` a ``datetime``, an ISO-8601 string or epoch
seconds, and returns at once for a time already past.

A sleeping run is a row in the database with a wake-up time, not a coroutine or a thread: it
survives restarts, and thousands of sleeping runs cost no memory. When the time comes, a worker
re-enters the function, which replays its finished steps from storage and carries on.
"""

from __future__ import annotations

from stepline import App, Context, TriggerEvent

app = App("sleep")


async def send_email(address: str, template: str) -> None:
    """Stand-in for an email API."""


@app.function(id="trial-reminders", trigger=TriggerEvent("user/trial.started"))
async def trial_reminders(ctx: Context) -> str:
    """Emails over a trial period: now, a week later, and when the trial ends."""
    email: str = ctx.event.data["email"]
    await ctx.step.run("send-welcome", send_email, email, "welcome")
    await ctx.step.sleep("wait-a-week", "7d")
    await ctx.step.run("send-tips", send_email, email, "tips")
    await ctx.step.sleep_until("wait-for-trial-end", ctx.event.data["trialEndsAt"])
    await ctx.step.run("send-trial-ended", send_email, email, "trial-ended")
    return email
