"""``NonRetriableError``: stop retrying what cannot succeed.

The guide ("Non-Retriable Errors")::

    const user = await step.run("fetch-user", async () => {
      const user = await db.users.findOne(event.data.userId);
      if (!user) {
        // Don't retry - user doesn't exist
        throw new NonRetriableError("User not found, stopping execution");
      }
      return user;
    });

Raised in a step, it fails the step at once (one attempt, no backoff); the function sees a
``StepError`` at that step, and, unless it catches it, the run fails with it. Raised in the
function body, it fails the run at once.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, NonRetriableError, TriggerEvent

app = App("non-retriable")

USERS: dict[str, dict[str, Any]] = {"u-1": {"id": "u-1", "name": "Ada", "plan": "free"}}


async def find_user(user_id: str) -> dict[str, Any] | None:
    """Stand-in for ``db.users.find_one``."""
    return USERS.get(user_id)


async def refresh_profile(user: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for the rest of the processing."""
    return {**user, "refreshed": True}


@app.function(id="process-user", trigger=TriggerEvent("user/process.requested"))
async def process_user(ctx: Context) -> dict[str, Any]:
    """Fail fast when the user does not exist; retry anything else."""

    async def fetch_user() -> dict[str, Any]:
        user = await find_user(ctx.event.data["userId"])
        if user is None:
            raise NonRetriableError("User not found, stopping execution")  # no retries
        return user

    user = await ctx.step.run("fetch-user", fetch_user)
    return await ctx.step.run("refresh-profile", refresh_profile, user)
