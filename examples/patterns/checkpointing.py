"""Checkpointing: commit step results in groups, bound one continuous pass.

The seed's ``checkpointing: { maxRuntime: "5m", bufferedSteps: 2, maxInterval: "10s" }``:
step results are committed two at a time (or 10 s after the first of a group), and a pass runs
at most five minutes before the run goes back to the queue and resumes. A crash re-runs at most
the results not yet committed.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Checkpointing, Context, TriggerEvent

app = App("checkpointing")


async def process1(data: dict[str, Any]) -> int:
    """Stand-in for a fast computation."""
    return int(data.get("value", 0)) + 1


async def process2(previous: int) -> int:
    """Stand-in for a second fast computation."""
    return previous * 2


@app.function(
    id="real-time-function",
    trigger=TriggerEvent("realtime/process"),
    checkpointing=Checkpointing(buffered_steps=2, max_interval="10s", max_runtime="5m"),
)
async def real_time_function(ctx: Context) -> dict[str, int]:
    """Two quick steps, committed together."""
    result1 = await ctx.step.run("step-1", process1, ctx.event.data)
    result2 = await ctx.step.run("step-2", process2, result1)
    return {"result2": result2}
