"""Logging: ``ctx.logger``, inside and outside steps.

The guide ("Logging Best Practices")::

    const inngest = new Inngest({ id: "my-app", logger }); // Pass logger to client

    async ({ event, step, logger }) => {
      // GOOD: Log inside steps to avoid duplicates
      const result = await step.run("fetch-data", async () => {
        logger.info("Fetching data for user", { userId: event.data.userId });
        return await fetchUserData(event.data.userId);
      });
      // AVOID: Logging outside steps can duplicate
      await step.run("log-completion", async () => {
        logger.info("Processing complete", { resultCount: result.length });
      });
    }

Pass any stdlib logger to ``App(logger=...)`` (configure its handlers and format as usual;
the default is ``stepline.<app id>``). ``ctx.logger`` wraps it and is replay-aware: while a
pass re-executes code that already ran, it drops records, so a line outside any step appears
once per run, and no "log-completion" step is needed. A line inside a step appears once per
attempt of that step. Every record carries ``run_id`` and ``function_id``; add fields with
``extra=``.
"""

from __future__ import annotations

import logging
from typing import Any

from stepline import App, Context, TriggerEvent

logger = logging.getLogger("examples.data_pipeline")
app = App("logging", logger=logger)


async def fetch_user_data(user_id: str) -> list[dict[str, Any]]:
    """Stand-in for a call to the data service."""
    return [{"userId": user_id, "n": 1}, {"userId": user_id, "n": 2}]


async def save_results(rows: list[dict[str, Any]]) -> int:
    """Stand-in for writing the rows."""
    return len(rows)


@app.function(id="process-data", trigger=TriggerEvent("data/process.requested"))
async def process_data(ctx: Context) -> int:
    """Fetch and save a user's data, logging progress."""
    user_id = ctx.event.data["userId"]
    ctx.logger.info("processing started", extra={"userId": user_id})  # once per run

    async def fetch() -> list[dict[str, Any]]:
        ctx.logger.info("fetching data for user", extra={"userId": user_id})  # once per attempt
        return await fetch_user_data(user_id)

    rows = await ctx.step.run("fetch-data", fetch)
    saved: int = await ctx.step.run("save-results", save_results, rows)
    ctx.logger.info("processing complete", extra={"resultCount": saved})  # once per run
    return saved
