"""Concurrency: bound how many runs of a function execute at once.

See ``docs/flow-control/concurrency.md``. ``generate-report`` calls a reporting API that
accepts two queries at a time per account and three in all, so the function has two
constraints: ``Concurrency(limit=2, key="event.data.accountId")`` and ``Concurrency(limit=3)``.
Runs over a limit wait in the queue (``QUEUED``); none is dropped.

``nightly-digest`` has ``concurrency=1`` and sleeps an hour between its steps: a sleeping run
holds no slot, so three digests all get to their sleep at once.

Run the demo with ``python -m examples.flow.concurrency``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from examples.flow._support import advance, ended_runs
from stepline import App, Concurrency, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-concurrency")

in_flight: Counter[str] = Counter()  # API calls executing now, per account and "all"
peak: Counter[str] = Counter()  # the most ever seen at once
ALL_ACCOUNTS = 3  # the function's limit in all (below)
# waiting: the calls of the wave not yet released; wave: how many waves were released
calls = {"expected": 0, "started": 0, "waiting": 0, "wave": 0}
POLL = 0.005  # seconds between a waiting call's looks (real time)


async def query_reporting_api(account_id: str) -> dict[str, Any]:
    """Stand-in for a slow reporting API; records how many calls overlap. A call stays in
    flight until as many calls as the limits allow in all are in flight with it (its wave), or
    no call is left to start (the last, smaller wave): what it records shows the limits however
    fast the machine is, not whether the calls' starts fell within a fixed time of each other.
    A wave is released by its last call, at once: a call that starts before the released ones
    have looked (a busy loop) begins the next wave, it does not fill the released one again."""
    wave = calls["wave"]
    calls["started"] += 1
    for key in (account_id, "all"):
        in_flight[key] += 1
        peak[key] = max(peak[key], in_flight[key])
    calls["waiting"] += 1
    if calls["waiting"] >= ALL_ACCOUNTS:
        calls["waiting"] = 0
        calls["wave"] += 1
    deadline = time.monotonic() + 30
    try:
        while calls["wave"] == wave and calls["started"] < calls["expected"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the other calls of this wave never started")
            await asyncio.sleep(POLL)  # real time: the other calls start in other runs' passes
    finally:
        if calls["wave"] == wave:  # left unreleased (no call left to start, or timed out)
            calls["waiting"] -= 1
        for key in (account_id, "all"):
            in_flight[key] -= 1
    return {"accountId": account_id, "rows": 42}


@app.function(
    id="generate-report",
    trigger=TriggerEvent("report/requested"),
    concurrency=[
        Concurrency(limit=2, key="event.data.accountId"),  # per account
        Concurrency(limit=ALL_ACCOUNTS),  # all accounts together
    ],
)
async def generate_report(ctx: Context) -> dict[str, Any]:
    """At most 2 runs per account and 3 in all execute at the same time."""
    return await ctx.step.run("query", query_reporting_api, ctx.event.data["accountId"])


@app.function(id="nightly-digest", trigger=TriggerEvent("digest/due"), concurrency=1)
async def nightly_digest(ctx: Context) -> str:
    """One digest executes at a time, but a digest that sleeps does not block the others."""
    user: str = ctx.event.data["userId"]
    await ctx.step.run("collect", lambda: f"news for {user}")
    await ctx.step.sleep("wait-for-send-window", "1h")
    await ctx.step.run("send", lambda: None)
    return user


async def demo() -> dict[str, Any]:
    in_flight.clear()
    peak.clear()
    calls.update(expected=0, started=0, waiting=0, wave=0)
    clock = MockClock(autojump=False)
    async with TestEngine(app, clock=clock) as t:
        requests = [Event("report/requested", {"accountId": a}) for a in ("acme", "globex")] * 4
        calls["expected"] = len(requests)
        await t.send(requests)
        reports = await ended_runs(t, "generate-report")
        print(
            f"{len(reports)} reports ran; at most at once: acme {peak['acme']}, "
            f"globex {peak['globex']}, all accounts {peak['all']}"
        )

        digests = await t.send([Event("digest/due", {"userId": u}) for u in ("ada", "bob", "cy")])
        for event_id in digests:
            [run] = await t.runs(event_id=event_id)
            await t.wait_for_status(run.run_id, "SLEEPING")
        print("with concurrency=1, all 3 digests are SLEEPING at the same time")
        advance(t, 3600)
        done = await ended_runs(t, "nightly-digest")
        print(f"an hour later: {[r.status for r in done]}")
    return {
        "reports": [r.status for r in reports],
        "peak": dict(peak),
        "digests": [r.status for r in done],
    }


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
