"""Rate limit: start at most so many runs per period; the excess is skipped, not delayed.

See ``docs/flow-control/rate-limit.md``. Company records change in bursts, but a fresh sync
every 4 hours per company is enough:
``RateLimit(limit=1, period="4h", key="event.data.companyId")``. An event over the limit
starts no run; ``app.skipped()`` lists it with the reason ``rate_limit``.

Run the demo with ``python -m examples.flow.rate_limit``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stepline import App, Context, Event, RateLimit, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-rate-limit")
HOUR = 3600


async def sync_company(company_id: str) -> str:
    """Stand-in for a slow, expensive sync with a third-party system."""
    return company_id


@app.function(
    id="sync-company",
    trigger=TriggerEvent("company/updated"),
    rate_limit=RateLimit(limit=1, period="4h", key="event.data.companyId"),
)
async def sync_company_data(ctx: Context) -> str:
    """Sync a company's data, at most once every 4 hours per company."""
    return await ctx.step.run("sync", sync_company, ctx.event.data["companyId"])


async def demo() -> dict[str, Any]:
    clock = MockClock(autojump=False)
    async with TestEngine(app, clock=clock) as t:

        async def update(company: str) -> int:
            """Send an update; the number of runs it started."""
            [event_id] = await t.send(Event("company/updated", {"companyId": company}))
            return len(await t.runs(event_id=event_id))

        started = {
            "acme x3 at 0h": [await update("acme") for _ in range(3)],
            "globex at 0h": [await update("globex")],
        }
        clock.advance(2 * HOUR)
        started["acme at 2h"] = [await update("acme")]
        clock.advance(2 * HOUR)
        started["acme at 4h"] = [await update("acme")]
        for moment, runs in started.items():
            print(f"{moment}: runs started {runs}")
        skips = await t.app.skipped("sync-company")
        print(f"skipped: {len(skips)} events, reasons {sorted({s.reason for s in skips})}")
        total = len(await t.runs(function_id="sync-company"))
        print(f"{total} runs in all")
    return {"started": started, "skipped": [s.reason for s in skips], "runs": total}


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
