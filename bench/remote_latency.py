"""Event → first step when the event is sent from another process (``--pg``: PostgreSQL).

A worker process (``bench.pg_child``) idles on the database; this process, which runs no
worker, sends one event at a time (``send_async``) and reads the run's output once it
completed: the ``time.monotonic()`` its first step's body started at (CLOCK_MONOTONIC is shared
by the processes of one machine). Figure: that minus the time just before the send. The worker
learns of the run through ``LISTEN/NOTIFY`` (its poll interval is 0.25 s: a poll-bound figure
would show it). DBOS: n/a (a workflow enqueued by another process waits for its executor's
queue poll, 1 s by default).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, median, percentile, pg_server, stepline_db, wait_terminal
from bench.pg_procs import start_workers, stop_workers


async def _stepline(url: str, sizes: Sizes) -> dict[str, Any]:
    from bench.pg_child import make_app
    from stepline import Event
    from stepline.serde import loads

    app = make_app(url)
    app.engine.store.migrate()
    children = start_workers(url, 1, 10)
    samples: list[float] = []
    try:
        for i in range(sizes.latency_warmup + sizes.latency_samples):
            await asyncio.sleep(0.01)
            t0 = time.monotonic()
            [event_id] = await app.send_async(Event("bench/remote", {"i": i}))
            # the figure is the first step's start, taken by the worker: polled every 10 ms, the
            # wait for the run's end does not take the CPU the worker and the server need, and
            # its first look only 10 ms after the send (send_async returns once the event is
            # committed, while the worker is still leasing the run: a look then took a core
            # from the worker or its server process in that window, on a 2-core machine)
            await asyncio.sleep(0.01)
            record = await wait_terminal(app, event_id, poll=0.01)
            if record.status != "COMPLETED":
                raise RuntimeError(f"run ended {record.status}: {record.error}")
            started = float(loads(record.output_json))
            if i >= sizes.latency_warmup:
                samples.append(started - t0)
    finally:
        stop_workers(children)
        app.close()
    return {
        "p50_ms": median(samples) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "samples": len(samples),
    }


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    if not pg_server():
        return {"na": "PostgreSQL only (python -m bench --pg)"}
    return asyncio.run(_stepline(stepline_db(workdir, "remote_latency"), sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": "not measured: a workflow enqueued from another process waits for a queue poll"}
