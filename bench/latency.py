"""Event-to-first-step latency on an idle worker.

One event at a time: the clock starts just before ``send_async`` and stops when the run's first
step body starts (``time.perf_counter()`` recorded inside the step). Between samples the run is
allowed to complete and the worker to go idle again. p50 and p99 over 200 samples (after a few
warm-up samples). DBOS: from just before ``start_workflow_async`` to its first step body.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, guard, median, percentile, stepline_db, wait_terminal, worker

FUNCTION_ID = "latency"
IDLE_GAP = 0.01  # seconds the worker sits idle before each sample


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": median(samples) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": sum(samples) / len(samples) * 1000,
        "max_ms": max(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "samples": len(samples),
    }


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from stepline import App, Event, TriggerEvent

    app = App("bench", db=stepline_db(workdir, "latency"))
    marks: dict[int, asyncio.Future[float]] = {}

    async def mark(key: int) -> int:
        future = marks.pop(key, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())
        return key

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent("bench/latency"))
    async def first_step(ctx: Any) -> int:
        return int(await ctx.step.run("first", mark, ctx.event.data["k"]))

    loop = asyncio.get_running_loop()
    samples: list[float] = []
    try:
        async with worker(app):
            await asyncio.sleep(0.05)
            for k in range(sizes.latency_warmup + sizes.latency_samples):
                await asyncio.sleep(IDLE_GAP)
                marks[k] = future = loop.create_future()
                t0 = time.perf_counter()
                [event_id] = await app.send_async(Event(name="bench/latency", data={"k": k}))
                t1 = await guard(future, 30)
                if k >= sizes.latency_warmup:
                    samples.append(t1 - t0)
                await wait_terminal(app, event_id)
    finally:
        app.close()
    return _summary(samples)


async def _dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from dbos import DBOS

    from bench import dbos_support as d
    from bench.common import dbos_db

    d.launch(dbos_db(workdir, "latency"))
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    try:
        for k in range(sizes.latency_warmup + sizes.latency_samples):
            await asyncio.sleep(IDLE_GAP)
            d.latency_marks[k] = future = loop.create_future()
            t0 = time.perf_counter()
            handle = await DBOS.start_workflow_async(d.latency_workflow, k)
            t1 = await asyncio.wait_for(future, 30)
            if k >= sizes.latency_warmup:
                samples.append(t1 - t0)
            await handle.get_result()
    finally:
        d.shutdown()
    result = _summary(samples)
    result["version"] = d.version()
    return result


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_dbos(workdir, sizes))
