"""Throttle: start runs at a steady rate; runs over it are delayed, never dropped.

See ``docs/flow-control/throttle.md``. A CRM accepts 2 updates a minute per account.
``Throttle(limit=2, period="1m", key="event.data.accountId")`` lets 2 start at once (``limit``)
and spaces the next ones 30 s apart (period / limit); ``burst=`` would allow that many more at
once, on top of ``limit``, as in Inngest. Each account has its own bucket.

Five updates for ``acme`` sent together start at +0 s, +0 s, +30 s, +60 s and +90 s; the one
for ``globex`` starts at once. The delayed runs wait as ``QUEUED`` runs.

Run the demo with ``python -m examples.flow.throttle``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.flow._support import ended_runs, seconds_after
from stepline import App, Context, Event, Throttle, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-throttle")


async def push_to_crm(account_id: str, contact: str) -> str:
    """Stand-in for the CRM's API."""
    return f"{account_id}/{contact}"


@app.function(
    id="sync-crm-contact",
    trigger=TriggerEvent("crm/contact.updated"),
    throttle=Throttle(limit=2, period="1m", key="event.data.accountId"),
)
async def sync_crm_contact(ctx: Context) -> str:
    """Push one contact; at most 2 a minute start per account, 2 of them at once."""
    data = ctx.event.data
    return await ctx.step.run("push", push_to_crm, data["accountId"], data["contact"])


async def demo() -> dict[str, Any]:
    clock = MockClock()  # autojump: the clock jumps to each delayed run's start time
    async with TestEngine(app, clock=clock) as t:
        t0 = clock.now()
        updates = [
            Event("crm/contact.updated", {"accountId": "acme", "contact": f"c{n}"})
            for n in range(5)
        ]
        updates.append(Event("crm/contact.updated", {"accountId": "globex", "contact": "c0"}))
        await t.send(updates)
        runs = await ended_runs(t, "sync-crm-contact")
    starts: dict[str, list[int]] = {}
    for run in sorted(runs, key=lambda r: (r.started_at, r.output)):
        account, contact = run.output.split("/")
        starts.setdefault(account, []).append(seconds_after(run.started_at, t0))
        print(f"{account} {contact} started at +{starts[account][-1]}s")
    print(f"{len(runs)} runs, none dropped")
    return {"starts": starts, "statuses": sorted({r.status for r in runs})}


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
