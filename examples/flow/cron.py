"""Cron triggers: run a function on a schedule, in a timezone, next to an event trigger.

See ``docs/flow-control/cron.md``. ``weekly-report`` runs every Friday at noon, Paris time
(``TriggerCron("TZ=Europe/Paris 0 12 * * 5")``), and also on demand
(``TriggerEvent("report/requested")``). A scheduled run's event is ``inngest/scheduled.timer``
with the cron string in ``data.cron`` and the tick time in ``ts``.

The demo starts on Thursday 26 March 2026. It moves the clock to Friday noon in Paris (11:00
UTC, winter time), then jumps four weeks ahead as if no worker had run: of the four missed
Fridays, only the latest one (24 April, 12:00 summer time = 10:00 UTC) runs, once.

Run the demo with ``python -m examples.flow.cron``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from examples.flow._support import advance, ended_runs, eventually
from stepline import App, Context, Event, TriggerCron, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-cron")
PARIS = ZoneInfo("Europe/Paris")


@app.function(
    id="weekly-report",
    triggers=[TriggerCron("TZ=Europe/Paris 0 12 * * 5"), TriggerEvent("report/requested")],
)
async def weekly_report(ctx: Context) -> dict[str, Any]:
    """The weekly report: on schedule, or when someone asks for it."""
    if ctx.event.name == "inngest/scheduled.timer":
        assert ctx.event.ts is not None
        tick = datetime.fromtimestamp(ctx.event.ts / 1000, PARIS)
        return {"by": "cron", "tick": tick.strftime("%a %d %b %H:%M %Z")}
    return {"by": ctx.event.data.get("requestedBy")}


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


async def demo() -> dict[str, Any]:
    clock = MockClock(start=utc(2026, 3, 26, 8, 0), autojump=False)  # Thursday
    async with TestEngine(app, clock=clock) as t:

        async def reports(count: int) -> list[Any]:
            async def enough() -> bool:
                return len(await t.runs(function_id="weekly-report")) >= count

            await eventually(enough)
            return [r.output for r in await ended_runs(t, "weekly-report")]

        await t.trigger(Event("report/requested", {"requestedBy": "ops"}))  # on demand
        advance(t, to=utc(2026, 3, 27, 11, 0))  # Friday 12:00 in Paris (CET, UTC+1)
        await reports(2)
        advance(t, to=utc(2026, 4, 24, 10, 30))  # four Fridays later, no worker in between
        done = await reports(3)
        await asyncio.sleep(0.1)  # give the worker time to (wrongly) fire more ticks
        total = len(await t.runs(function_id="weekly-report"))
    for output in done:
        print(f"report by {output['by']}" + (f" for {output['tick']}" if "tick" in output else ""))
    print(f"{total} runs: the on-demand one, Friday 27 March, and one catch-up for 24 April")
    return {"reports": done, "total": total}


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
