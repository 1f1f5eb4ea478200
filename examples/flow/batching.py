"""Batching: one run for several events, in ``ctx.events``.

See ``docs/flow-control/batching.md``. Page views are written to an analytics store in bulk:
``BatchEvents(max_size=3, timeout="10s", key="event.data.siteId")`` starts a run as soon as 3
views of a site are waiting, or 10 seconds after the first view of a batch, whichever comes
first. Each site has its own batches.

Run the demo with ``python -m examples.flow.batching``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.flow._support import ended_runs, eventually, seconds_after
from stepline import App, BatchEvents, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-batching")


async def insert_rows(site: str, paths: list[str]) -> int:
    """Stand-in for one bulk INSERT into an analytics store."""
    return len(paths)


@app.function(
    id="record-page-views",
    trigger=TriggerEvent("analytics/page.viewed"),
    batch_events=BatchEvents(max_size=3, timeout="10s", key="event.data.siteId"),
)
async def record_page_views(ctx: Context) -> dict[str, Any]:
    """Write up to 3 page views of one site in one step."""
    site = ctx.event.data["siteId"]  # ctx.event is the first event of the batch
    paths = [e.data["path"] for e in ctx.events]
    await ctx.step.run("insert", insert_rows, site, paths)
    return {"site": site, "paths": paths}


async def demo() -> dict[str, Any]:
    clock = MockClock()  # autojump: the clock jumps to the 10 s timeouts
    async with TestEngine(app, clock=clock) as t:
        t0 = clock.now()
        views = [("shop", f"/p{n}") for n in range(5)] + [("blog", "/hello")]
        await t.send([Event("analytics/page.viewed", {"siteId": s, "path": p}) for s, p in views])
        await eventually(lambda: _count(t, 3))
        runs = await ended_runs(t, "record-page-views")
    batches = []
    for run in sorted(runs, key=lambda r: (r.created_at, r.output["site"])):
        when = seconds_after(run.created_at, t0)
        site, paths = run.output["site"], run.output["paths"]
        batches.append((when, site, paths))
        print(f"+{when}s: {site} batch of {len(paths)}: {paths}")
    print(f"{len(views)} events, {len(runs)} runs")
    return {"batches": batches}


async def _count(t: TestEngine, n: int) -> bool:
    return len(await t.runs(function_id="record-page-views")) >= n


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
