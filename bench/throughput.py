"""Throughput: 1,000 runs of 3 trivial steps, all sent at once, one in-process worker.

Stepline: one ``send_async`` with 1,000 events (one transaction), a worker with the default
``concurrency=100``; the clock stops when the store shows all 1,000 runs COMPLETED. Also reported:
the group-commit factor (write jobs per SQLite transaction, from ``engine.writer``), which is why
concurrent runs share fsyncs. DBOS: 1,000 ``start_workflow_async`` calls issued concurrently,
then every ``get_result()``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, check_workers, count_runs, stepline_db, worker

FUNCTION_ID = "three-steps"
STEPS = 3


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from stepline import App, Event, TriggerEvent

    app = App("bench", db=stepline_db(workdir, "throughput"))
    n = sizes.throughput_runs
    bodies_done = 0

    async def noop(i: int) -> int:
        return i

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent("bench/throughput"))
    async def three_steps(ctx: Any) -> int:
        nonlocal bodies_done
        for i in range(STEPS):
            await ctx.step.run(f"s{i}", noop, i)
        bodies_done += 1
        return STEPS

    events = [Event(name="bench/throughput", data={"i": i}) for i in range(n)]
    try:
        async with worker(app, concurrency=sizes.throughput_concurrency):
            await asyncio.sleep(0.05)
            writer = app.engine.writer
            tx0, jobs0 = writer.transactions, writer.jobs
            t0 = time.perf_counter()
            await app.send_async(events)
            sent = time.perf_counter() - t0
            deadline = time.monotonic() + 120
            # Cheap in-process signal first, then the store's truth (polled every 20 ms).
            while bodies_done < n and time.monotonic() < deadline:
                check_workers()
                await asyncio.sleep(0.02)
            while await count_runs(app, FUNCTION_ID, "COMPLETED", n + 1) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError("runs did not complete in 120 s")
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            transactions = writer.transactions - tx0
            jobs = writer.jobs - jobs0
    finally:
        app.close()
    return {
        "runs_per_s": n / elapsed,
        "steps_per_s": n * STEPS / elapsed,
        "wall_s": elapsed,
        "send_s": sent,
        "runs": n,
        "concurrency": sizes.throughput_concurrency,
        "transactions": transactions,
        "jobs": jobs,
        "jobs_per_transaction": jobs / transactions if transactions else 0.0,
        "fsyncs_per_run": transactions / n,
    }


async def _dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from dbos import DBOS

    from bench import dbos_support as d
    from bench.common import dbos_db

    d.launch(dbos_db(workdir, "throughput"))
    n = sizes.throughput_runs
    try:
        warm = await DBOS.start_workflow_async(d.steps_workflow, STEPS)
        await warm.get_result()
        t0 = time.perf_counter()
        handles = await asyncio.gather(
            *(DBOS.start_workflow_async(d.steps_workflow, STEPS) for _ in range(n))
        )
        started = time.perf_counter() - t0
        await asyncio.gather(*(h.get_result() for h in handles))
        elapsed = time.perf_counter() - t0
    finally:
        d.shutdown()
    return {
        "runs_per_s": n / elapsed,
        "steps_per_s": n * STEPS / elapsed,
        "wall_s": elapsed,
        "send_s": started,
        "runs": n,
        "version": d.version(),
    }


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_dbos(workdir, sizes))
