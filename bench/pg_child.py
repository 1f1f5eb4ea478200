"""A worker process for the PostgreSQL workloads (``processes``, ``remote_latency``).

``python -m bench.pg_child URL WORKER_ID CONCURRENCY``: runs a worker of the bench app on the
database ``URL``, prints ``ready`` once it leases, and stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from stepline import App, TriggerEvent
from stepline._worker_collector import worker_collector

STEPS = 3


def make_app(url: str) -> App:
    app = App("bench", db=url)

    async def noop(i: int) -> int:
        return i

    @app.function(id="three-steps", trigger=TriggerEvent("bench/throughput"))
    async def three_steps(ctx: Any) -> int:
        for i in range(STEPS):
            await ctx.step.run(f"s{i}", noop, i)
        return STEPS

    async def started() -> float:  # async, as every other row's step bodies (a sync one runs
        return time.monotonic()  # in a thread); CLOCK_MONOTONIC: comparable across processes

    @app.function(id="first-step", trigger=TriggerEvent("bench/remote"))
    async def first_step(ctx: Any) -> float:
        return await ctx.step.run("mark", started)

    return app


async def _main(url: str, worker_id: str, concurrency: int) -> None:
    app = make_app(url)
    loop = asyncio.get_running_loop()
    try:
        async with app.worker(concurrency=concurrency, worker_id=worker_id) as worker:
            await worker.ready.wait()
            # the collector as the worker runner sets it (``stepline._worker_collector``)
            with worker_collector():
                print("ready", flush=True)
                await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
    finally:
        app.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
