"""Priority: reorder queued runs with an expression.

See ``docs/flow-control/priority.md``. Summaries are generated one at a time
(``concurrency=1``); enterprise customers jump the queue and free users wait a little:
``Priority(run="event.data.plan == 'enterprise' ? 120 : (event.data.plan == 'free' ? -60 : 0)")``.
A run with priority *p* is queued as if it had arrived *p* seconds earlier; a negative *p*
delays it by that much.

The demo pauses the function to build a backlog, sends four requests ten seconds apart, then
resumes it: the enterprise request runs first, the free one last, a minute after it was sent.

Run the demo with ``python -m examples.flow.priority``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.flow._support import ended_runs, seconds_after
from stepline import App, Context, Event, Priority, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-priority")

PLAN_PRIORITY = "event.data.plan == 'enterprise' ? 120 : (event.data.plan == 'free' ? -60 : 0)"
served: list[str] = []  # customers in the order their summary was made


async def summarize(customer: str, text: str) -> str:
    """Stand-in for a language-model call."""
    served.append(customer)
    return text[:20]


@app.function(
    id="summarize",
    trigger=TriggerEvent("ai/summary.requested"),
    concurrency=1,
    priority=Priority(run=PLAN_PRIORITY),
)
async def summarize_document(ctx: Context) -> str:
    """Summarize a document; enterprise requests first."""
    data = ctx.event.data
    customer: str = data["customer"]
    await ctx.step.run("summarize", summarize, customer, data["text"])
    return customer


async def demo() -> dict[str, Any]:
    served.clear()
    clock = MockClock()  # autojump, once the function is resumed
    async with TestEngine(app, clock=clock) as t:
        t0 = clock.now()
        await t.app.pause_function("summarize")  # runs are created and held: a backlog
        requests = [("ann", "pro"), ("bob", "free"), ("cat", "pro"), ("dan", "enterprise")]
        for customer, plan in requests:
            data = {"customer": customer, "plan": plan, "text": f"{customer}'s report"}
            await t.send(Event("ai/summary.requested", data))
            print(f"+{round(clock.now() - t0)}s: {customer} ({plan}) queued")
            clock.advance(10)
        await t.app.resume_function("summarize")
        runs = await ended_runs(t, "summarize")
    starts = {r.output: seconds_after(r.started_at, t0) for r in runs}
    print("resumed at +40s")
    for customer in served:
        print(f"{customer} started at +{starts[customer]}s")
    return {"order": list(served), "starts": [starts[c] for c in served]}


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
