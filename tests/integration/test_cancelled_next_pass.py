"""A run cancelled after the worker leased it for its next pass (kept in ``Worker._next_pass``
while its previous pass's function unwinds) starts no pass: ``cancel_run`` promises "a step
already executing finishes but nothing after it runs". Review R1 of the fifteenth stop (the
reviewer's repro): the pass started from the lease's state and ran the next step's body."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import TestEngine


async def test_a_run_cancelled_while_its_next_pass_waits_runs_no_step(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    ran: list[str] = []
    unwinding, go_on = asyncio.Event(), asyncio.Event()

    @app.function(id="pay", trigger=TriggerEvent("go"))
    async def pay(ctx: Context) -> Any:
        try:
            await ctx.step.wait_for_event("paid", event="paid", timeout="1h")
            await ctx.step.run("charge", lambda: ran.append("charge"))
        finally:
            if not unwinding.is_set():  # the first pass's end only: its function unwinds
                unwinding.set()
                # a cleanup awaiting I/O (well under executor.STOP_GRACE, 1 s of real time)
                await asyncio.wait_for(go_on.wait(), 0.8)
        return "charged"

    async with make_engine() as t:
        [event_id] = await t.send(Event("go"))
        [run] = await t.runs(event_id=event_id)
        await asyncio.wait_for(unwinding.wait(), 10)  # pass 1 suspended, its function unwinds
        await t.send(Event("paid"))  # resolves the wait: the run is due again, leased at once
        worker = t.worker
        assert worker is not None
        await until("the next pass's lease", lambda: run.run_id in worker._next_pass)
        assert await t.app.cancel_run(run.run_id)
        go_on.set()
        ended = await t.wait_for_run(run.run_id)
        await until("the next pass to end", lambda: run.run_id not in worker.active)
    assert ended.status == "CANCELLED"
    assert ran == [], f"a step of the cancelled run ran: {ran}"
