"""A worker process for the recovery workload (``python -m bench.recovery_child ...``).

``--mode start``: start ``--runs`` runs of a 3-step function whose middle step sleeps
``--sleep`` seconds; print ``INFLIGHT <epoch>`` once every run is inside that step, then keep
running (the parent SIGKILLs this process). ``--mode resume``: print ``READY <epoch>``, start a
worker (with ``--worker-id``) on the same database, and print ``DONE <epoch>`` once every run has
completed; the middle step does not sleep in this mode.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

FUNCTION_ID = "recovery"


def say(word: str) -> None:
    print(f"{word} {time.time():.6f}", flush=True)


async def stepline_main(args: argparse.Namespace) -> None:
    from bench.common import check_workers, count_runs, worker
    from stepline import App, Event, TriggerEvent

    app = App("bench", db=args.db)
    started = 0

    async def noop(i: int) -> int:
        return i

    async def slow(i: int) -> int:
        nonlocal started
        started += 1
        if args.sleep:
            await asyncio.sleep(args.sleep)
        return i

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent("bench/recovery"))
    async def three_steps(ctx: Any) -> int:
        i = ctx.event.data["i"]
        await ctx.step.run("a", noop, i)
        await ctx.step.run("b", slow, i)
        await ctx.step.run("c", noop, i)
        return int(i)

    options = {"worker_id": args.worker_id, "lease_ttl": args.lease_ttl}
    if args.mode == "start":
        async with worker(app, concurrency=max(100, args.runs), **options):
            await app.send_async(
                [Event(name="bench/recovery", data={"i": i}) for i in range(args.runs)]
            )
            while started < args.runs:
                check_workers()
                await asyncio.sleep(0.005)
            say("INFLIGHT")
            while True:
                check_workers()
                await asyncio.sleep(0.1)
    say("READY")
    async with worker(app, concurrency=max(100, args.runs), **options):
        while await count_runs(app, FUNCTION_ID, "COMPLETED", args.runs + 1) < args.runs:
            await asyncio.sleep(0.005)
        say("DONE")
    app.close()


async def dbos_main(args: argparse.Namespace) -> None:
    from dbos import DBOS

    from bench import dbos_support as d

    if args.mode == "resume":
        say("READY")

    started = 0

    def on_start() -> None:
        nonlocal started
        started += 1

    d.recovery_started = on_start
    d.recovery_sleep = args.sleep
    d.launch(args.db, executor_id=args.worker_id)
    try:
        if args.mode == "start":
            for i in range(args.runs):
                await DBOS.start_workflow_async(d.recovery_workflow, i)
            while started < args.runs:
                await asyncio.sleep(0.005)
            say("INFLIGHT")
            await asyncio.sleep(3600)
            return
        while True:
            done = await asyncio.to_thread(
                DBOS.list_workflows, status="SUCCESS", load_input=False, load_output=False
            )
            if len(done) >= args.runs:
                break
            await asyncio.sleep(0.005)
        say("DONE")
    finally:
        d.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery_child")
    parser.add_argument("--system", choices=("stepline", "dbos"), required=True)
    parser.add_argument("--mode", choices=("start", "resume"), required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    runner = stepline_main if args.system == "stepline" else dbos_main
    asyncio.run(runner(args))


if __name__ == "__main__":
    main()
