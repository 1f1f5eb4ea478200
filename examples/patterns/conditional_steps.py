"""Steps that run only for some runs.

The guide ("Conditional Step Execution")::

    const userData = await step.run("fetch-user", () => getUserData(event.data.userId));

    // Conditional step execution
    if (userData.isPremium) {
      await step.run("premium-processing", () => processPremiumFeatures(userData));
    }

    // Always runs
    await step.run("standard-processing", () => processStandardFeatures(userData));

Plain ``if`` statements decide which steps run. Branch on step results (or on the event), never
on something that can change between passes, such as the clock: a replay must take the same
branch to find the same stored results.
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, TriggerEvent

app = App("conditional-steps")


async def get_user_data(user_id: str) -> dict[str, Any]:
    """Stand-in for a call to the user service."""
    return {"userId": user_id, "isPremium": False}


async def process_premium_features(user: dict[str, Any]) -> str:
    """Stand-in for premium-only work."""
    return f"premium features for {user['userId']}"


async def process_standard_features(user: dict[str, Any]) -> str:
    """Stand-in for the work every user gets."""
    return f"standard features for {user['userId']}"


@app.function(id="conditional-process", trigger=TriggerEvent("process/conditional"))
async def conditional_process(ctx: Context) -> list[str]:
    """Premium users get an extra step."""
    user = await ctx.step.run("fetch-user", get_user_data, ctx.event.data["userId"])
    done: list[str] = []
    if user["isPremium"]:
        done.append(await ctx.step.run("premium-processing", process_premium_features, user))
    done.append(await ctx.step.run("standard-processing", process_standard_features, user))
    return done
