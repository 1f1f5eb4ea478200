"""Per-step overhead: one run of 100 trivial steps, each committed durably before the next.

Figure: (wall time from sending the event until the run is COMPLETED) / 100, the median over a
few runs after one warm-up run. The wall time includes the event's commit, the lease, the 100 step
commits and the completion commit, so it is slightly pessimistic. DBOS: one workflow of 100
``@DBOS.step`` calls, from ``start_workflow_async`` until ``get_result()`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Sizes, guard, median, stepline_db, wait_terminal, worker
from bench.floor import measure_commits

FUNCTION_ID = "per-step"


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from stepline import App, Event, TriggerEvent

    app = App("bench", db=stepline_db(workdir, "per_step"))
    finished: list[asyncio.Future[None]] = []

    async def noop(i: int) -> int:
        return i

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent("bench/per-step"))
    async def many_steps(ctx: Any) -> int:
        n = ctx.event.data["n"]
        for i in range(n):
            await ctx.step.run(f"s{i}", noop, i)
        if finished and not finished[-1].done():
            finished[-1].set_result(None)
        return int(n)

    n = sizes.per_step_steps
    per_step: list[float] = []
    tx_per_run: list[int] = []
    loop = asyncio.get_running_loop()
    try:
        async with worker(app, concurrency=10):
            await asyncio.sleep(0.05)
            writer = app.engine.writer
            for repeat in range(sizes.per_step_repeats + 1):
                finished.append(loop.create_future())
                tx0 = writer.transactions
                t0 = time.perf_counter()
                [event_id] = await app.send_async(Event(name="bench/per-step", data={"n": n}))
                await guard(finished[-1], 60)
                record = await wait_terminal(app, event_id)
                elapsed = time.perf_counter() - t0
                if record.status != "COMPLETED":
                    raise RuntimeError(f"run ended {record.status}: {record.error}")
                if repeat > 0:  # the first run warms up
                    per_step.append(elapsed / n)
                    tx_per_run.append(writer.transactions - tx0)
                await asyncio.sleep(0.02)
            breakdown = await _breakdown(app, n, finished)
    finally:
        app.close()
    floor = measure_commits(workdir / "floor.db", "WAL", "FULL", 200)
    return {
        "ms_per_step": median(per_step) * 1000,
        "ms_per_step_min": min(per_step) * 1000,
        "ms_per_step_max": max(per_step) * 1000,
        "steps": n,
        "runs": len(per_step),
        "transactions_per_run": median(tx_per_run),
        "floor_ms": floor["commit_ms"],
        "breakdown": breakdown,
    }


async def _breakdown(app: Any, n: int, finished: list[asyncio.Future[None]]) -> dict[str, Any]:
    """One more run, instrumented from outside the engine: where a step's time goes.

    ``transaction_ms``: inside ``store.transaction()`` (BEGIN, the write verbs, COMMIT + fsync);
    ``writer_hop_ms``: the rest of ``writer.write()`` (queueing, the hand-off to the writer thread
    and back to the event loop); ``engine_ms``: everything else (the executor, the step call,
    asyncio scheduling). All per step. Skipped (empty) if the engine's shape has changed.
    """
    engine = app.engine
    store, writer = engine.store, engine.writer
    totals = {"transaction": 0.0, "write": 0.0, "transactions": 0}
    try:
        original_tx, original_write = store.transaction, writer.write
    except AttributeError:
        return {}

    @contextlib.contextmanager
    def timed_transaction() -> Iterator[Any]:
        t0 = time.perf_counter()
        with original_tx() as tx:
            yield tx
        totals["transaction"] += time.perf_counter() - t0
        totals["transactions"] += 1

    async def timed_write(job: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original_write(job)
        finally:
            totals["write"] += time.perf_counter() - t0

    from stepline import Event

    loop = asyncio.get_running_loop()
    try:
        store.transaction = timed_transaction
        writer.write = timed_write
    except AttributeError:
        return {}
    try:
        finished.append(loop.create_future())
        t0 = time.perf_counter()
        await app.send_async(Event(name="bench/per-step", data={"n": n}))
        await guard(finished[-1], 60)
        wall = time.perf_counter() - t0
    finally:
        del store.transaction, writer.write
    return {
        "wall_ms": wall / n * 1000,
        "transaction_ms": totals["transaction"] / n * 1000,
        "writer_hop_ms": (totals["write"] - totals["transaction"]) / n * 1000,
        "engine_ms": (wall - totals["write"]) / n * 1000,
        "transactions": totals["transactions"],
    }


async def _dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from dbos import DBOS

    from bench import dbos_support as d
    from bench.common import dbos_db

    d.launch(dbos_db(workdir, "per_step"))
    n = sizes.per_step_steps
    per_step: list[float] = []
    try:
        for repeat in range(sizes.per_step_repeats + 1):
            t0 = time.perf_counter()
            handle = await DBOS.start_workflow_async(d.steps_workflow, n)
            await handle.get_result()
            elapsed = time.perf_counter() - t0
            if repeat > 0:
                per_step.append(elapsed / n)
    finally:
        d.shutdown()
    return {
        "ms_per_step": median(per_step) * 1000,
        "ms_per_step_min": min(per_step) * 1000,
        "ms_per_step_max": max(per_step) * 1000,
        "steps": n,
        "runs": len(per_step),
        "version": d.version(),
    }


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_dbos(workdir, sizes))
