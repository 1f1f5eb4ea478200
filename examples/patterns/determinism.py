"""Non-deterministic code belongs inside steps.

The guide ("Step Execution Flow")::

    // BAD: Non-deterministic logic outside steps
    const timestamp = Date.now(); // This runs multiple times!

    // GOOD: All non-deterministic logic in steps
    const result = await step.run("process-with-timestamp", () => {
      const timestamp = Date.now(); // Only runs once
      return processData(event.data, timestamp);
    });

A run's function body is entered again after every sleep, wait, retry or crash, and replays up
to where it stopped: code outside steps runs on every pass, so ``datetime.now()`` there gives a
new value each time. Inside ``step.run`` it runs once; the result is stored and every later pass
gets the stored value. Pure calculations (``summarize``) need no step: they give the same result
on every pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stepline import App, Context, TriggerEvent

app = App("determinism")


def process_data(data: dict[str, Any], timestamp: str) -> dict[str, Any]:
    """Stand-in for real processing: stamps the record."""
    return {**data, "processedAt": timestamp}


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """A pure transformation: safe outside a step."""
    return {"id": record["id"], "processedAt": record["processedAt"]}


async def publish(summary: dict[str, Any]) -> None:
    """Stand-in for writing the summary somewhere."""


@app.function(id="process-data", trigger=TriggerEvent("data/process.requested"))
async def process(ctx: Context) -> dict[str, Any]:
    """Stamp the record once, wait, then publish the same stamp."""

    def process_with_timestamp() -> dict[str, Any]:
        timestamp = datetime.now(UTC).isoformat()  # runs once, however many passes there are
        return process_data(ctx.event.data, timestamp)

    record = await ctx.step.run("process-with-timestamp", process_with_timestamp)
    await ctx.step.sleep("settle", "1h")  # the run suspends; the next pass replays to here
    summary = summarize(record)
    await ctx.step.run("publish", publish, summary)
    return summary
