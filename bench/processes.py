"""Throughput with 1, 2 and 4 worker processes (``--pg``: PostgreSQL only).

``throughput_runs * 2`` runs of 3 trivial steps are sent in one ``send_async`` by this process
(which runs no worker) to k ready worker processes (``bench.pg_child``, concurrency 100 each);
the clock runs from just before the send to the store showing every run COMPLETED. Reported
per k: runs/s, the CPU seconds the worker processes and the PostgreSQL server used per second of
wall time (2 cores: 2.0 is the whole machine), and the WAL syncs (fsyncs) per run, which show
how many commits share one fsync.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, pg_server, stepline_db
from bench.pg_procs import CpuMeter, start_workers, stop_workers, wal_syncs

PROCESS_COUNTS = (1, 2, 4)


async def _one(url: str, runs: int, processes: int) -> dict[str, Any]:
    from bench.pg_child import make_app
    from stepline import Event
    from stepline.store.records import RunFilter

    app = make_app(url)
    app.engine.store.migrate()
    children = start_workers(url, processes, 100)
    try:
        meter = CpuMeter([c.pid for c in children])
        syncs0, _ = wal_syncs()
        t0 = time.perf_counter()
        await app.send_async([Event("bench/throughput", {"i": i}) for i in range(runs)])
        query = RunFilter(function_id="three-steps", status="COMPLETED", limit=runs + 1)
        store = app.engine.store
        deadline = time.monotonic() + 300
        # counted, not listed: listing up to 2,000 runs every 20 ms took a core from the workers
        while await asyncio.to_thread(store.count_runs, query) < runs:
            if time.monotonic() > deadline:
                raise TimeoutError("the runs did not complete in 300 s")
            if any(c.poll() is not None for c in children):
                raise RuntimeError("a worker process died")
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - t0
        cpu = meter.read()
        syncs1, _ = wal_syncs()
    finally:
        stop_workers(children)
        app.close()
    k = f"p{processes}"
    return {
        f"{k}_runs_per_s": runs / wall,
        f"{k}_wall_s": wall,
        f"{k}_workers_cpu": cpu["workers_cpu_s"] / wall,
        f"{k}_server_cpu": cpu["server_cpu_s"] / wall,
        f"{k}_fsyncs_per_run": (syncs1 - syncs0) / runs,
    }


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    if not pg_server():
        return {"na": "PostgreSQL only (python -m bench --pg)"}
    runs = sizes.throughput_runs * 2
    figures: dict[str, Any] = {"runs": runs}
    for processes in PROCESS_COUNTS:
        url = stepline_db(workdir, f"processes_{processes}")
        figures |= asyncio.run(_one(url, runs, processes))
    return figures


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": "not measured: DBOS executors take workflows from queues the caller defines"}
