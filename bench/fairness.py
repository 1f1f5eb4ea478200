"""Fair leasing (issue 8): time to the first step of a function behind another's backlog.

``backlog`` runs of function ``fair-a`` (one trivial step each) are queued with no worker running;
then a worker (concurrency 100) starts on them and, once it is saturated (its first 200 runs
completed), one event of function ``fair-b`` is sent at a time: from just before ``send_async``
to ``fair-b``'s first step body starting (``time.perf_counter()`` inside the step). Median and
max of a few samples, each ``fair-b`` run completing before the next is sent, on SQLite (the
default durability) and on the memory store (``python -m bench --pg``: on PostgreSQL). With one
global FIFO the run waited for the whole
backlog (about 70 s behind 100,000); the fair order leases it at the next lease attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Sizes,
    count_runs,
    guard,
    median,
    pg_server,
    poll_until,
    stepline_db,
    wait_terminal,
    worker,
)

DBOS_NA = "n/a: DBOS queues are the caller's (no per-function leasing to compare)"
SAMPLES = 5
SEND_BATCH = 1000


async def _first_step_behind(db: str, backlog: int, samples: int) -> dict[str, Any]:
    from stepline import App, Event, TriggerEvent

    app = App("bench", db=db)
    marks: dict[int, asyncio.Future[float]] = {}

    async def work(key: int) -> int:
        return key

    async def mark(key: int) -> int:
        future = marks.pop(key, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())
        return key

    @app.function(id="fair-a", trigger=TriggerEvent("bench/fair.a"))
    async def backlog_fn(ctx: Any) -> int:
        return int(await ctx.step.run("work", work, ctx.event.data["k"]))

    @app.function(id="fair-b", trigger=TriggerEvent("bench/fair.b"))
    async def quiet_fn(ctx: Any) -> int:
        return int(await ctx.step.run("first", mark, ctx.event.data["k"]))

    loop = asyncio.get_running_loop()
    waits: list[float] = []
    try:
        t0 = time.perf_counter()
        for start in range(0, backlog, SEND_BATCH):
            events = [
                Event(name="bench/fair.a", data={"k": k})
                for k in range(start, min(backlog, start + SEND_BATCH))
            ]
            await app.send_async(events)
        queue_s = time.perf_counter() - t0
        async with worker(app, concurrency=100):

            async def saturated() -> bool:
                return await count_runs(app, "fair-a", "COMPLETED", 200) >= 200

            await poll_until(saturated, timeout=120)
            for k in range(samples):
                marks[k] = future = loop.create_future()
                t0 = time.perf_counter()
                [event_id] = await app.send_async(Event(name="bench/fair.b", data={"k": k}))
                waits.append(await guard(future, 600) - t0)
                await wait_terminal(app, event_id)
            completed_a = await count_runs(app, "fair-a", "COMPLETED", backlog + 1)
    finally:
        app.close()
    return {
        "backlog": backlog,
        "queue_s": queue_s,
        "first_step_p50_ms": median(waits) * 1000,
        "first_step_max_ms": max(waits) * 1000,
        "samples": len(waits),
        "backlog_completed_meanwhile": completed_a,
    }


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    backlog = sizes.fairness_backlog
    if pg_server():  # python -m bench --pg: on the bench's PostgreSQL only
        postgres = asyncio.run(_first_step_behind(stepline_db(workdir, "fair"), backlog, SAMPLES))
        return {
            "backlog": backlog,
            "postgres_p50_ms": postgres["first_step_p50_ms"],
            "postgres_max_ms": postgres["first_step_max_ms"],
            "postgres": postgres,
        }
    sqlite = asyncio.run(_first_step_behind(stepline_db(workdir, "fair"), backlog, SAMPLES))
    memory = asyncio.run(_first_step_behind("memory://", backlog, SAMPLES))
    return {
        "backlog": backlog,
        "sqlite_p50_ms": sqlite["first_step_p50_ms"],
        "sqlite_max_ms": sqlite["first_step_max_ms"],
        "memory_p50_ms": memory["first_step_p50_ms"],
        "memory_max_ms": memory["first_step_max_ms"],
        "sqlite": sqlite,
        "memory": memory,
    }


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": DBOS_NA}


def main() -> None:
    """``python -m bench.fairness [--backlog N] [--db sqlite|memory]``: the workload alone, its
    figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.fairness")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--dir", default=".")
    args = parser.parse_args()
    db = "memory://" if args.db == "memory" else stepline_db(Path(args.dir), "fair")
    result = asyncio.run(_first_step_behind(db, args.backlog, args.samples))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
