"""One function, several triggers.

The guide ("Multiple triggers (up to 10)")::

    [
      { event: "user/signup" },
      { event: "user/login", if: 'event.data.firstLogin == true' },
      { cron: "0 9 * * *" } // Daily at 9 AM
    ]

    // Combine with events
    [{ event: "manual/report.requested" }, { cron: "0 0 * * 0" }] // Weekly on Sunday

Up to 10 triggers, each with its own filter; ``ctx.event.name`` tells which one fired. The
weekly report combines an event with ``TriggerCron("0 0 * * 0")`` (Sundays at midnight, UTC; add
a ``TZ=Area/City`` prefix for local time): a scheduled run's event is
``inngest/scheduled.timer``, whose data has only ``cron``, so ``requestedBy`` is ``None`` then.
The onboarding function keeps to its two events: the guide's daily ``0 9 * * *`` schedule
carries no user, so it belongs in a function of its own. See ``docs/flow-control/cron.md``.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerCron, TriggerEvent

app = App("multiple-triggers")


async def start_onboarding(user_id: str, source: str) -> dict[str, str]:
    """Stand-in for the onboarding service."""
    return {"userId": user_id, "source": source}


async def build_report(requested_by: str | None) -> dict[str, Any]:
    """Stand-in for a reporting query."""
    return {"rows": 3, "requestedBy": requested_by}


@app.function(
    id="start-onboarding",
    triggers=[
        TriggerEvent("user/signup"),
        TriggerEvent("user/login", if_="event.data.firstLogin == true"),
    ],
)
async def onboard(ctx: Context) -> dict[str, str]:
    """Starts for every signup, and for a login only when it is the user's first."""
    return await ctx.step.run(
        "start-onboarding", start_onboarding, ctx.event.data["userId"], ctx.event.name
    )


@app.function(
    id="weekly-report",
    triggers=[TriggerEvent("manual/report.requested"), TriggerCron("0 0 * * 0")],
)
async def weekly_report(ctx: Context) -> dict[str, Any]:
    """The weekly report: every Sunday at midnight (UTC), and on demand."""
    return await ctx.step.run("build-report", build_report, ctx.event.data.get("requestedBy"))
