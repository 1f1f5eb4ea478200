"""A run's passes and the transactions of its send leave no cyclic garbage: what they made is
freed by reference counting when they end. A pass's executor and its function's context held
each other (the context's ``step`` drives the executor, the executor keeps the context), and a
PostgreSQL transaction held itself through its catalog and index readers' closures: about 50
container objects a 3-step run left for the collector, whose full collections walked them with
everything else (the one-process PostgreSQL throughput workload: 0.12-0.16 ms of the process's
CPU a run in the collector, about a fifth of it)."""

from __future__ import annotations

import gc
from typing import Any

from _polling import until

from stepline import App, Context, Event, TriggerEvent

# what a pass and a transaction make (not a thread's that a test before this one left running,
# whose exception could leave garbage of its own in the window)
_OURS = {
    "PassExecutor",
    "Step",
    "StepGate",
    "Branches",
    "ExecutingSteps",
    "Context",
    "ReplayAwareLogger",
    "RunState",
    "Lease",
    "PostgresTx",
    "Statements",
    "CatalogView",
    "IndexPaths",
    "Admission",
    "NewRun",
}


async def _noop(i: int) -> int:
    return i


async def test_a_finished_run_leaves_no_stepline_object_for_the_collector(app_db: str) -> None:
    app = App("garbage", db=app_db)

    @app.function(id="three", trigger=TriggerEvent("three/go"))
    async def three(ctx: Context) -> Any:
        for i in range(3):
            await ctx.step.run(f"s{i}", _noop, i)
        return 3

    async def completed(event_id: str) -> bool:
        runs = await app.runs(event_id=event_id)
        return bool(runs) and runs[0].status == "COMPLETED"

    try:
        async with app.worker() as worker:
            await worker.ready.wait()
            [warm] = await app.send_async(Event(name="three/go"))  # caches, connections
            await until("the first run completed", lambda: completed(warm))
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept in gc.garbage
            try:
                [event_id] = await app.send_async(Event(name="three/go"))
                await until("the run completed", lambda: completed(event_id))
                gc.collect()
                left = sorted(
                    {type(o).__qualname__ for o in gc.garbage if type(o).__qualname__ in _OURS}
                )
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
    finally:
        app.close()
    assert left == []
