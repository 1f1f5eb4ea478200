"""``RetryAfterError``: retry when the other side says so.

The guide ("Custom Retry Timing")::

    await step.run("call-api", async () => {
      const response = await externalAPI.call(event.data);
      if (response.status === 429) {
        // Retry after specific time from API
        const retryAfter = response.headers["retry-after"];
        throw new RetryAfterError("Rate limited", `${retryAfter}s`);
      }
      return response.data;
    });

The step is retried at the time given (a number of seconds, a ``timedelta`` or a ``datetime``)
instead of after the usual backoff; the attempt still counts towards ``retries``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepline import App, Context, RetryAfterError, TriggerEvent

app = App("retry-after")


@dataclass
class ApiResponse:
    """What an HTTP client returns, reduced to what the example needs."""

    status: int
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


async def call_external_api(payload: dict[str, Any]) -> ApiResponse:
    """Stand-in for a rate-limited API."""
    return ApiResponse(200, {"accepted": payload})


@app.function(id="api-call", trigger=TriggerEvent("api/call.requested"))
async def respect_rate_limit(ctx: Context) -> dict[str, Any]:
    """Call the API; on 429, retry after the delay it asks for."""

    async def call_api() -> dict[str, Any]:
        response = await call_external_api(ctx.event.data)
        if response.status == 429:
            retry_after = int(response.headers["retry-after"])  # seconds
            raise RetryAfterError("Rate limited", retry_after)
        return response.data

    return await ctx.step.run("call-api", call_api)
