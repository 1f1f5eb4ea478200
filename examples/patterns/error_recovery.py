"""Fall back when a step fails for good.

The guide ("Error Recovery Patterns")::

    let primaryResult;
    try {
      primaryResult = await step.run("primary-service", () => callPrimaryService(event.data));
    } catch (error) {
      // Fallback to secondary service
      primaryResult = await step.run("fallback-service", () => callSecondaryService(event.data));
    }
    return { result: primaryResult };

When a step has used up its retries (or raised ``NonRetriableError``), Stepline raises
``StepError`` at that step in the function; catch it to take another path. The failure is
stored like a result, so later passes replay straight into the ``except`` branch without
calling the primary service again.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, StepError, TriggerEvent

app = App("error-recovery")


async def call_primary_service(data: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for the preferred provider."""
    return {"provider": "primary", "input": data}


async def call_secondary_service(data: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for the fallback provider."""
    return {"provider": "secondary", "input": data}


@app.function(id="robust-process", trigger=TriggerEvent("process/robust"))
async def robust_process(ctx: Context) -> dict[str, Any]:
    """Try the primary service (with its retries), else the secondary one."""
    try:
        result = await ctx.step.run("primary-service", call_primary_service, ctx.event.data)
    except StepError as error:
        ctx.logger.warning("primary service failed, falling back: %s", error.error_message)
        result = await ctx.step.run("fallback-service", call_secondary_service, ctx.event.data)
    return {"result": result}
