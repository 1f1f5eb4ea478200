"""Scale: many runs sleeping or waiting on one SQLite file, then a minute in which many wake.

One function, triggered by ``scale/start``: a run either sleeps in a step until ``data.until``
or waits for ``scale/paid`` with ``if_="async.data.k == event.data.k"`` (a distinct key each,
timeout 30 days). Runs are rows, not coroutines: a suspended run holds no task, no memory and no
slot, so the worker's memory must not grow with their number.

1. **Creation**: ``runs - wake`` long runs (half sleep 30 days, half wait), sent with
   ``send_async`` in batches of 1,000 to an in-process worker (``concurrency=100``, the worker's
   default; ``--scale-concurrency``),
   which runs each into its sleep or wait (one pass, one commit, shared by group commit). The
   sender keeps at most 5,000 runs not yet suspended. ``create_per_s``: runs per second, from the
   first send to every run SLEEPING or WAITING (counted in the store).
2. **Wakers**: ``wake`` more runs, each sleeping until its own instant, spread evenly over
   ``window`` seconds (60 s for 100,000: ~1,667 due per second) that start once they are all
   asleep (checked in the store before the window opens).
3. **Sizes**: the database (file + WAL) and the worker process's RSS (``VmRSS``) before the
   creation (after a warm-up of 1,000 runs), after it (every run suspended), and after the wake
   window (``rss_growth_mb``: after creation minus before).
4. **Wake-up**: for each waker, ``lateness`` = the time its function resumed after the sleep
   (measured in the function body, wall clock) minus its due instant; p50, p99 and max.
   ``wake_per_s``: wakers completed per second, from the first due instant to the last waker
   COMPLETED in the store.
5. **Matching at scale**: 1,000 ``scale/paid`` events matching none, then 1,000 each resolving
   one of the waiting runs (one ``send_async`` each): µs per event with all those runs pending.

``runs`` is ``--scale-runs`` of ``python -m bench`` (or ``STEPLINE_BENCH_SCALE_RUNS``): 10,000
with ``--quick``, 100,000 by default; the full row is
``scripts/bench --only scale --scale-runs 1000000 --no-dbos`` (about half an hour on a 2-core VM).
``wake`` defaults to ``min(100,000, runs // 10)`` and ``window`` to 60 s per 100,000 wakers (the
same rate of wake-ups at every size). DBOS is not run: its workflows sleeping in ``DBOS.sleep``
are coroutines of the executor, which is what this row shows Stepline does not need.
"""

from __future__ import annotations

import array
import asyncio
import gc
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Sizes, check_workers, percentile, stepline_db, worker

FUNCTION_ID = "scaled"
START = "scale/start"
PAID = "scale/paid"
BATCH = 1000
BACKLOG = 5000  # runs sent but not yet suspended, at most
FAR = 30 * 24 * 3600.0
DBOS_NA = (
    "not run: a DBOS workflow sleeping in DBOS.sleep is a coroutine of its executor; this row "
    "shows that a suspended Stepline run is only rows"
)

# lateness of each waker (NaN until it resumed) and how many resumed; filled by the function
# body, in this process
_late = array.array("d")
_resumed = [0]
# when each waker's pass started (its lease handed to the worker), to split the lateness into
# "until leased" and "leased until resumed" (load_run, replay)
_leased_at: dict[str, float] = {}
_lease_part = array.array("d")


def rss_mb() -> float:
    """This process's resident set size in MB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def db_mb(path: Path) -> float:
    total = sum(
        Path(str(path) + s).stat().st_size for s in ("", "-wal") if Path(str(path) + s).exists()
    )
    return total / 1e6


def counts(path: Path) -> dict[str, int]:
    """Runs per status, read on a connection of its own."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    finally:
        conn.close()


def count_status(path: Path, status: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT count(*) FROM runs WHERE status = ?", (status,)).fetchone()
        return int(row[0])
    finally:
        conn.close()


def make_app(workdir: Path) -> tuple[Any, Path]:
    from stepline import App, TriggerEvent

    url = stepline_db(workdir, "scale")
    app = App("bench", db=url)

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent(START))
    async def scaled(ctx: Any) -> None:
        data = ctx.event.data
        if data["kind"] == "wait":
            await ctx.step.wait_for_event(
                "pay", event=PAID, if_="async.data.k == event.data.k", timeout="30d"
            )
            return
        await ctx.step.sleep_until("nap", data["until"])
        i = data.get("i")
        if i is not None and math.isnan(_late[i]):
            now = time.time()
            _late[i] = now - data["until"]
            _resumed[0] += 1
            leased = _leased_at.get(ctx.run_id)
            if leased is not None:
                _lease_part.append(leased - data["until"])

    return app, Path(url.removeprefix("sqlite:///"))


async def _send_all(app: Any, w: Any, n: int, make: Callable[[int], dict[str, Any]]) -> None:
    """Send ``n`` ``scale/start`` events (``make(i)`` is the data of the i-th) in batches,
    keeping at most ``BACKLOG`` runs not yet suspended (passes counted by the worker)."""
    from stepline import Event

    first = w.passes
    for start in range(0, n, BATCH):
        while start - (w.passes - first) > BACKLOG:
            check_workers()
            await asyncio.sleep(0.01)
        stop = min(n, start + BATCH)
        await app.send_async([Event(name=START, data=make(i)) for i in range(start, stop)])
    await _wait_for("runs suspended", lambda: w.passes - first >= n, 3600, 0.05)


async def _wait_for(what: str, check: Any, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        check_workers()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout:.0f} s")
        await asyncio.sleep(interval)


async def _stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    from stepline import Event

    n = sizes.scale_runs
    n_wake = sizes.scale_wake if sizes.scale_wake >= 0 else min(100_000, n // 10)
    window = sizes.scale_window if sizes.scale_window > 0 else 60.0 * n_wake / 100_000
    n_long = n - n_wake
    result: dict[str, Any] = {"runs": n, "wake": n_wake, "window_s": window}
    app, path = make_app(workdir)
    try:
        async with worker(app, concurrency=sizes.scale_concurrency) as w:
            result["concurrency"] = w.concurrency
            # warm-up: imports, caches, the first pages of every table
            far = time.time() + FAR
            warm = [Event(name=START, data={"kind": "sleep", "k": f"w{i}", "until": far})
                    for i in range(BATCH)]  # fmt: skip
            await app.send_async(warm)
            await _wait_for("warm-up", lambda: w.passes >= BATCH, 120, 0.05)
            gc.collect()
            result["rss_before_mb"] = rss_mb()

            # 1. creation: half sleep 30 days, half wait for an event
            t0 = time.perf_counter()
            await _send_all(
                app,
                w,
                n_long,
                lambda i: {"kind": "wait" if i % 2 else "sleep", "k": f"k{i}", "until": far},
            )
            expected = n_long + BATCH
            await _wait_for(
                "long runs SLEEPING or WAITING",
                lambda: sum(counts(path).get(s, 0) for s in ("SLEEPING", "WAITING")) >= expected,
                120,
            )
            create_s = time.perf_counter() - t0
            rate = n_long / create_s if n_long else 2000.0

            # 2. the wakers: due evenly over the window, which opens once all are asleep
            _late.extend([math.nan] * n_wake)
            t_wake = time.perf_counter()
            lead = 2.0 * n_wake / max(rate, 100.0) + 5.0
            window_start = time.time() + lead
            step = window / max(n_wake, 1)
            await _send_all(
                app,
                w,
                n_wake,
                lambda i: {"kind": "sleep", "k": f"z{i}", "until": window_start + step * i, "i": i},
            )
            expected += n_wake
            await _wait_for(
                "wakers SLEEPING",
                lambda: sum(counts(path).get(s, 0) for s in ("SLEEPING", "WAITING")) >= expected,
                120,
            )
            total_s = create_s + time.perf_counter() - t_wake
            asleep_at = time.time()
            result["wakers_asleep_before_window"] = asleep_at < window_start
            result["create_s"] = total_s
            result["create_per_s"] = (n_long + n_wake) / total_s
            gc.collect()
            result["rss_after_mb"] = rss_mb()
            result["rss_growth_mb"] = result["rss_after_mb"] - result["rss_before_mb"]
            result["db_mb"] = db_mb(path)
            result["statuses"] = counts(path)

            # 3. the wake window
            if n_wake:
                start_pass = w._start_pass

                def traced(lease: Any) -> None:
                    _leased_at[lease.run_id] = time.time()
                    start_pass(lease)

                w._start_pass = traced
                writer = app.engine.writer
                tx0, jobs0 = writer.transactions, writer.jobs
                await asyncio.sleep(max(0.0, window_start - time.time() - 0.5))
                print(f"scale: wake window opens in 0.5 s (pid {os.getpid()})", file=sys.stderr)
                await asyncio.sleep(max(0.0, window_start - time.time()))
                done0 = count_status(path, "COMPLETED")
                await _wait_for("wakers resumed", lambda: _resumed[0] >= n_wake, window + 600, 0.05)
                await _wait_for(
                    "wakers COMPLETED",
                    lambda: count_status(path, "COMPLETED") - done0 >= n_wake,
                    120,
                    0.01,
                )
                ended = time.time()
                late_ms = [x * 1000 for x in _late]
                result["late_p50_ms"] = percentile(late_ms, 50)
                result["late_p99_ms"] = percentile(late_ms, 99)
                result["late_max_ms"] = max(late_ms)
                result["late_min_ms"] = min(late_ms)
                result["wake_per_s"] = n_wake / (ended - window_start)
                leased_ms = [x * 1000 for x in _lease_part]
                if leased_ms:
                    result["late_until_leased_p50_ms"] = percentile(leased_ms, 50)
                    result["late_until_leased_p99_ms"] = percentile(leased_ms, 99)
                tx = writer.transactions - tx0
                result["wake_transactions"] = tx
                result["wake_jobs_per_transaction"] = (writer.jobs - jobs0) / tx if tx else 0.0
                gc.collect()
                result["rss_end_mb"] = rss_mb()

            # 4. matching with every long run still pending
            waiting = n_long // 2
            m = min(BATCH, waiting)
            if m:
                nonmatch = [Event(name=PAID, data={"k": f"x{i}"}) for i in range(m)]
                t0 = time.perf_counter()
                await app.send_async(nonmatch)
                result["nonmatch_us"] = (time.perf_counter() - t0) / m * 1e6
                # waiting runs have odd indexes (k1, k3, ...)
                match = [Event(name=PAID, data={"k": f"k{2 * i + 1}"}) for i in range(m)]
                t0 = time.perf_counter()
                await app.send_async(match)
                result["match_us"] = (time.perf_counter() - t0) / m * 1e6
                result["waiting_pending"] = waiting
        result["db_end_mb"] = db_mb(path)
    finally:
        app.close()
    return result


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return asyncio.run(_stepline(workdir, sizes))


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": DBOS_NA}


def main() -> None:
    """``python -m bench.scale [--runs N] [--wake W] [--window S]``: the workload alone, its
    figures as JSON (for profiling: ``py-spy record -- python -m bench.scale ...``)."""
    import argparse
    import dataclasses
    import json
    import shutil

    from bench.common import scratch_root

    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--wake", type=int, default=-1)
    parser.add_argument("--window", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    sizes = dataclasses.replace(
        Sizes.quick(),
        scale_runs=args.runs,
        scale_wake=args.wake,
        scale_window=args.window,
        scale_concurrency=args.concurrency,
    )
    root = scratch_root()
    try:
        print(json.dumps(run_stepline(root, sizes), indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
