"""A lease attempt that takes runs of a backlog and of a quiet function starts the quiet
function's passes first and the backlog's a few loop turns later (``engine/_minority_first``):
the quiet run reaches its first step body before any of the backlog's functions begins (issue
8: the first step of a function behind another's backlog). Before, every pass started at once
and the quiet run's pass interleaved with the backlog's on the event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _polling import until

import pgtest
from stepline import App, Context, Event, TriggerEvent
from stepline.engine._minority_first import split
from stepline.store.records import Lease
from stepline.testing import MockClock

T0 = 1_700_000_000.0


async def test_a_quiet_functions_run_reaches_its_step_before_a_backlogs_passes_begin(
    app: App, store_kind: str, tmp_path: Path
) -> None:
    order: list[str] = []

    async def work() -> int:
        return 1

    async def first() -> int:
        order.append("quiet: first step")
        return 1

    @app.function(id="backlog", trigger=TriggerEvent("a"))
    async def backlog(ctx: Context) -> Any:
        order.append("backlog: begins")
        return await ctx.step.run("work", work)

    @app.function(id="quiet", trigger=TriggerEvent("b"))
    async def quiet(ctx: Context) -> Any:
        return await ctx.step.run("first", first)

    app.attach(pgtest.opened_store(store_kind, tmp_path / "stepline.db"), MockClock(start=T0))
    try:
        # queued with no worker: its first lease attempt takes them all (5 + 1 = its slots)
        await app.send_async([Event("a", {"k": k}) for k in range(5)])
        await app.send_async(Event("b"))
        worker = app.make_worker(concurrency=6, worker_id="w", poll_interval=None)
        task = asyncio.create_task(worker.run())
        try:
            await until("every run's step", lambda: len(order) == 6 and not worker.active)
        finally:
            worker.stop()
            await task
        assert worker.passes == 6
    finally:
        app.close()
    assert order[0] == "quiet: first step", order


def _lease(run_id: str, function_id: str | None) -> Lease:
    return Lease(run_id, "t", function_id=function_id)


@pytest.mark.parametrize(
    ("functions", "later"),
    [
        (["a", "a", "b", "a"], ["1", "2", "4"]),  # the backlog's runs wait, the other's do not
        (["a", "b", "c", "a"], ["1", "4"]),  # every function with fewer starts first
        (["a", "a", "b", "b"], []),  # as many each: all at once
        (["a", "a", "a"], []),  # one function: all at once
        (["a", None, "b", "b"], []),  # a lease that does not say its function: all at once
    ],
)
def test_which_passes_of_a_lease_attempt_start_later(
    functions: list[str | None], later: list[str]
) -> None:
    leases = [_lease(str(i), fn) for i, fn in enumerate(functions, start=1)]
    now, after = split(leases)
    assert [lease.run_id for lease in after] == later
    assert [lease.run_id for lease in now] == [
        lease.run_id for lease in leases if lease.run_id not in later
    ]
