"""Singleton: at most one active run per key.

See ``docs/flow-control/singleton.md``. Two functions take ten minutes each for a user:

- ``sync-inbox`` has ``Singleton(key="event.data.userId", mode="skip")``: while a user's sync
  is active, another request for that user starts nothing (recorded as skipped, reason
  ``singleton``);
- ``rebuild-recommendations`` has ``mode="cancel"``: a new request cancels the user's active
  run and starts a fresh one (the latest data wins).

Run the demo with ``python -m examples.flow.singleton``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.flow._support import advance, ended_runs
from stepline import App, Context, Event, Singleton, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-singleton")


@app.function(
    id="sync-inbox",
    trigger=TriggerEvent("inbox/sync.requested"),
    singleton=Singleton(key="event.data.userId", mode="skip"),
)
async def sync_inbox(ctx: Context) -> str:
    """One inbox sync per user at a time; extra requests are dropped."""
    await ctx.step.run("fetch-mail", lambda: None)
    await ctx.step.sleep("provider-cooldown", "10m")
    await ctx.step.run("store-mail", lambda: None)
    user_id: str = ctx.event.data["userId"]
    return user_id


@app.function(
    id="rebuild-recommendations",
    trigger=TriggerEvent("recs/rebuild.requested"),
    singleton=Singleton(key="event.data.userId", mode="cancel"),
)
async def rebuild_recommendations(ctx: Context) -> str:
    """One rebuild per user; a newer request replaces the active one."""
    await ctx.step.run("load-history", lambda: None)
    await ctx.step.sleep("train", "10m")
    await ctx.step.run("publish", lambda: None)
    return f"{ctx.event.data['userId']}#{ctx.event.data['version']}"


async def demo() -> dict[str, Any]:
    clock = MockClock(autojump=False)
    async with TestEngine(app, clock=clock) as t:

        async def request(name: str, data: dict[str, Any]) -> None:
            [event_id] = await t.send(Event(name, data))
            for run in await t.runs(event_id=event_id):
                await t.wait_for_status(run.run_id, "SLEEPING")

        for user in ("u1", "u1", "u2"):
            await request("inbox/sync.requested", {"userId": user})
        for user, version in (("u1", 1), ("u1", 2), ("u2", 1)):
            await request("recs/rebuild.requested", {"userId": user, "version": version})
        advance(t, 600)
        inbox = await ended_runs(t, "sync-inbox")
        recs = await ended_runs(t, "rebuild-recommendations")
        skips = await t.app.skipped("sync-inbox")
    summary: dict[str, Any] = {
        "inbox": sorted((r.output, r.status) for r in inbox),
        "inbox_skipped": [s.reason for s in skips],
        "recs": sorted((r.status, r.error["message"] if r.error else r.output) for r in recs),
    }
    print(f"sync-inbox: {summary['inbox']}, skipped: {summary['inbox_skipped']}")
    for status, outcome in summary["recs"]:
        print(f"rebuild-recommendations: {status} ({outcome})")
    return summary


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
