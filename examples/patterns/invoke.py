"""Invoke another function as a step and use its result.

The guide ("Function Invocation")::

    // Invoke another function as a step
    const result = await step.invoke("generate-report", {
      function: generateReportFunction,
      data: { userId: event.data.userId }
    });

    // Use returned data
    await step.run("process-report", () => { return processReport(result); });

``step.invoke`` starts a run of the target with ``data`` as its event data (the event is named
``inngest/function.invoked``) and suspends the caller; the child's return value becomes the
step's result. If the child fails, ``StepError`` is raised at the ``invoke``. Invoking is also
how a function that nears the limits (1,000 steps, 32 MB of state) is split into smaller ones.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("invoke")


async def query_activity(user_id: str) -> list[dict[str, Any]]:
    """Stand-in for an analytics query."""
    return [{"userId": user_id, "logins": 12}, {"userId": user_id, "logins": 3}]


async def store_report(user_id: str, report: dict[str, Any]) -> str:
    """Stand-in for saving the report; returns where it was stored."""
    return f"reports/{user_id}.json"


@app.function(id="generate-report")  # no trigger: it only runs when invoked
async def generate_report(ctx: Context) -> dict[str, Any]:
    """Build a user's activity report."""
    rows = await ctx.step.run("query-activity", query_activity, ctx.event.data["userId"])
    return {"userId": ctx.event.data["userId"], "logins": sum(row["logins"] for row in rows)}


@app.function(id="monthly-summary", trigger=TriggerEvent("user/summary.requested"))
async def monthly_summary(ctx: Context) -> dict[str, Any]:
    """Invoke ``generate-report`` and store what it returns."""
    user_id = ctx.event.data["userId"]
    report = await ctx.step.invoke(
        "generate-report", function=generate_report, data={"userId": user_id}
    )
    location = await ctx.step.run("process-report", store_report, user_id, report)
    return {"report": report, "location": location}
