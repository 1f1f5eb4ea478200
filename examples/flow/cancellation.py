"""Cancellation: ``cancel_on``, ``timeouts``, cancelling by API, replay, pause and resume.

See ``docs/flow-control/cancellation.md``.

- ``process-order`` waits a 30-minute grace period before charging. An ``order/cancelled``
  event for the same order cancels it (``CancelOn(..., match="data.orderId")``); a run that
  could not start within 10 minutes is cancelled too (``Timeouts(start="10m")``).
- ``release-stock`` listens to ``inngest/function.cancelled`` and cleans up after it.
- ``export-data`` must finish within 15 minutes of its start (``Timeouts(finish="15m")``);
  exports are also cancelled by API, one or in bulk.
- ``import-contacts`` fails on its first try; it is replayed from its failed step. Then the
  function is paused: new imports are held as ``QUEUED`` runs until it is resumed.

Run the demo with ``python -m examples.flow.cancellation``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.flow._support import advance, ended_runs
from stepline import (
    App,
    CancelOn,
    Context,
    Event,
    NonRetriableError,
    Timeouts,
    TriggerEvent,
)
from stepline.testing import MockClock, TestEngine

app = App("flow-cancellation")
MINUTE = 60
charged: list[str] = []
fetches: list[str] = []
upload_down = {"value": True}


@app.function(
    id="process-order",
    trigger=TriggerEvent("order/created"),
    cancel_on=[CancelOn("order/cancelled", match="data.orderId")],
    timeouts=Timeouts(start="10m"),
)
async def process_order(ctx: Context) -> str:
    """Reserve stock, give the customer 30 minutes to change their mind, then charge."""
    order_id: str = ctx.event.data["orderId"]
    await ctx.step.run("reserve-stock", lambda: order_id)
    await ctx.step.sleep("grace-period", "30m")
    await ctx.step.run("charge", lambda: charged.append(order_id))
    return order_id


@app.function(
    id="release-stock",
    trigger=TriggerEvent(
        "inngest/function.cancelled", if_='event.data.function_id == "process-order"'
    ),
)
async def release_stock(ctx: Context) -> str:
    """Clean up after a cancelled order: ``data`` has ``run_id``, ``function_id``, ``reason``."""
    run_id: str = ctx.event.data["run_id"]
    return run_id


@app.function(
    id="export-data", trigger=TriggerEvent("export/requested"), timeouts=Timeouts(finish="15m")
)
async def export_data(ctx: Context) -> str:
    """A long export (it waits an hour for a slot at the warehouse)."""
    await ctx.step.sleep("wait-for-warehouse", "1h")
    return "exported"


def fetch_contacts(source: str) -> list[str]:
    fetches.append(source)
    return ["ada@example.com", "bob@example.com"]


def upload_contacts(contacts: list[str]) -> int:
    if upload_down["value"]:
        raise NonRetriableError("the CRM is down")
    return len(contacts)


@app.function(
    id="import-contacts", trigger=TriggerEvent("contacts/import"), retries=0, concurrency=1
)
async def import_contacts(ctx: Context) -> int:
    """Fetch (expensive) then upload, one import at a time; replaying from ``upload`` does
    not fetch again."""
    contacts = await ctx.step.run("fetch", fetch_contacts, ctx.event.data["source"])
    return await ctx.step.run("upload", upload_contacts, contacts)


async def demo() -> dict[str, Any]:
    charged.clear()
    fetches.clear()
    upload_down["value"] = True
    facts: dict[str, Any] = {}
    clock = MockClock(autojump=False)
    async with TestEngine(app, clock=clock) as t:

        async def start(name: str, data: dict[str, Any], status: str | None = None) -> str:
            """Send an event that starts one run; wait for ``status``; return the run id."""
            [event_id] = await t.send(Event(name, data))
            [run] = await t.runs(event_id=event_id)
            if status is not None:
                await t.wait_for_status(run.run_id, status)
            return run.run_id

        async def status(run_id: str) -> str:
            run = await t.app.get_run(run_id)
            assert run is not None
            return run.status

        # 1. cancel_on: an order/cancelled event for o-1 cancels o-1's run only
        o1 = await start("order/created", {"orderId": "o-1"}, "SLEEPING")
        o2 = await start("order/created", {"orderId": "o-2"}, "SLEEPING")
        await t.send(Event("order/cancelled", {"orderId": "o-1"}))
        advance(t, 30 * MINUTE)
        done = {run_id: await t.wait_for_run(run_id) for run_id in (o1, o2)}
        [cleanup] = await ended_runs(t, "release-stock")
        facts["cancel_on"] = [done[o1].status, done[o2].status, charged == ["o-2"]]
        facts["cleanup_saw_o1"] = cleanup.output == o1
        print(f"cancel_on: o-1 {done[o1].status}, o-2 {done[o2].status}, charged {charged}")
        print(f"release-stock ran for the cancelled run: {facts['cleanup_saw_o1']}")

        # 2. timeouts.start: a run held (here: function paused) for more than 10 minutes
        await t.app.pause_function("process-order")
        late = await start("order/created", {"orderId": "o-3"})
        advance(t, 11 * MINUTE)
        await t.app.resume_function("process-order")
        late_run = await t.wait_for_run(late)
        facts["start_timeout"] = (late_run.status, late_run.error and late_run.error["message"])
        print(f"timeouts.start: {late_run.status} ({facts['start_timeout'][1]})")

        # 3. timeouts.finish: the export sleeps an hour, past its 15-minute budget
        export = await start("export/requested", {"region": "eu"}, "SLEEPING")
        advance(t, 60 * MINUTE)
        export_run = await t.wait_for_run(export)
        facts["finish_timeout"] = (
            export_run.status,
            export_run.error and export_run.error["message"],
        )
        print(f"timeouts.finish: {export_run.status} ({facts['finish_timeout'][1]})")

        # 4. cancel one run by API, then several at once with a filter
        one = await start("export/requested", {"region": "us"}, "SLEEPING")
        facts["cancel_run"] = [await t.app.cancel_run(one), await t.app.cancel_run(one)]
        print(f"cancel_run: {facts['cancel_run'][0]}, again: {facts['cancel_run'][1]}")
        regions = ("eu", "eu", "us")
        bulk = [await start("export/requested", {"region": r}, "SLEEPING") for r in regions]
        cancelled = await t.app.cancel_runs("export-data", if_='event.data.region == "eu"')
        facts["cancel_runs"] = [await status(run_id) for run_id in bulk]
        print(f"cancel_runs(if_=eu): {len(cancelled)} cancelled, statuses {facts['cancel_runs']}")

        # 5. replay a failed run from its failed step: fetch is not run again
        failed = await t.wait_for_run(await start("contacts/import", {"source": "csv"}))
        upload_down["value"] = False
        replayed = await t.wait_for_run(await t.app.replay_run(failed.run_id, from_step="upload"))
        facts["replay"] = (failed.status, replayed.status, replayed.output, len(fetches))
        print(
            f"replay: {failed.status} run replayed from 'upload': {replayed.status}, "
            f"output {replayed.output}, fetched {len(fetches)} time(s)"
        )

        # 6. pause / resume: runs are held, not lost, then run in order
        await t.app.pause_function("import-contacts")
        held = []
        for source in ("crm", "ldap"):
            held.append(await start("contacts/import", {"source": source}))
            advance(t, 1)
        facts["paused"] = [await status(run_id) for run_id in held]
        fetches.clear()
        await t.app.resume_function("import-contacts")
        facts["resumed"] = [(await t.wait_for_run(run_id)).status for run_id in held]
        facts["resumed_order"] = list(fetches)
        print(f"paused: {facts['paused']}; resumed: {facts['resumed']} in order {fetches}")
    return facts


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
