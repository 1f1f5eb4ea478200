"""Per-step overhead: one run of 100 trivial steps, each committed durably before the next.

Figure: (wall time from just before sending the event to the run's ``ended_at``, the time its
completion was committed with) / 100, the median over a few runs after one warm-up run. The wall
time includes the event's commit, the lease and the 100 step commits, so it is slightly
pessimistic. Right before each run, 100 raw
durable commits are timed on the same disk (``floor_ms``, the median of their means), because fsync
latency drifts on a shared machine; the target compares the two. DBOS: one workflow of 100
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
from bench.floor import commit_loop

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
    floor: list[float] = []
    tx_per_run: list[int] = []
    cpu: list[list[float]] = []  # per run: (this process, the PostgreSQL server) CPU per step
    loop = asyncio.get_running_loop()
    commits = commit_loop(workdir, "per_step_floor")
    try:
        async with worker(app, concurrency=10):
            await asyncio.sleep(0.05)
            writer = app.engine.writer
            for repeat in range(sizes.per_step_repeats + 1):
                # The floor is timed right before each run, on the same disk: fsync latency drifts.
                batch = commits.commits(n)
                if repeat > 0:
                    floor.append(sum(batch) / len(batch))
                await asyncio.sleep(0.01)
                finished.append(loop.create_future())
                tx0 = writer.transactions
                cpu0 = _cpu()
                t0 = time.time()
                [event_id] = await app.send_async(Event(name="bench/per-step", data={"n": n}))
                await guard(finished[-1], 60)
                record = await wait_terminal(app, event_id)
                if record.status != "COMPLETED":
                    raise RuntimeError(f"run ended {record.status}: {record.error}")
                # The run's own end time, as committed (polling for it would add its interval).
                elapsed = record.ended_at - t0
                if repeat > 0:  # the first run warms up
                    per_step.append(elapsed / n)
                    tx_per_run.append(writer.transactions - tx0)
                    cpu.append([(b - a) / n for a, b in zip(cpu0, _cpu(), strict=True)])
                await asyncio.sleep(0.02)
            breakdown = await _breakdown(app, n, finished)
    finally:
        app.close()
        commits.close()
    return {
        "ms_per_step": median(per_step) * 1000,
        "ms_per_step_min": min(per_step) * 1000,
        "ms_per_step_max": max(per_step) * 1000,
        "steps": n,
        "runs": len(per_step),
        "transactions_per_run": median(tx_per_run),
        "floor_ms": median(floor) * 1000,
        "ratio_to_floor": median(per_step) / median(floor),
        "breakdown": breakdown,
        "cpu_ms_per_step": median([c[0] for c in cpu]) * 1000,
        "server_cpu_ms_per_step": median([c[1] for c in cpu]) * 1000,
    }


def _cpu() -> tuple[float, float]:
    """CPU seconds so far of this process and of the bench's PostgreSQL server (0 without)."""
    from bench.pg_procs import postgres_pids, server_cpu_seconds

    return time.process_time(), sum(server_cpu_seconds(pid) for pid in postgres_pids())


async def _breakdown(app: Any, n: int, finished: list[asyncio.Future[None]]) -> dict[str, Any]:
    """One more run, instrumented from outside the engine: where a step's time goes.

    ``transaction_ms``: inside ``store.transaction()``, or a store's optimistic transaction,
    or its commit on the event loop (``commit_on_loop``, or ``commit_steps_on_loop``: a lone
    step's commit on PostgreSQL, its statement's round trip) (BEGIN, the write verbs, COMMIT +
    fsync);
    ``writer_hop_ms``: the rest of a write (``writer.submit`` until its caller is woken:
    queueing, and the hand-off to the writer's thread and back, or, for a store that commits on
    the event loop (PostgreSQL), the writer's kick of the loop commit); ``engine_ms``:
    everything else (the executor, the step call, asyncio scheduling). All per step. Skipped
    (empty) if the engine's shape has changed.
    """
    engine = app.engine
    store, writer = engine.store, engine.writer
    totals = {"transaction": 0.0, "write": 0.0, "transactions": 0}
    kinds = ["transaction", "optimistic_transaction", "commit_on_loop", "commit_steps_on_loop"]
    try:
        originals = {kind: getattr(store, kind) for kind in kinds if hasattr(store, kind)}
        original_submit = writer.submit  # every write goes through it (write awaits it)
    except AttributeError:
        return {}

    def timed(transaction: Any) -> Any:
        @contextlib.contextmanager
        def timed_transaction() -> Iterator[Any]:
            t0 = time.perf_counter()
            try:
                with transaction() as tx:
                    yield tx
            finally:  # an optimistic one made again raises: its time counts all the same
                totals["transaction"] += time.perf_counter() - t0
                totals["transactions"] += 1

        return timed_transaction

    def timed_on_loop(commit: Any) -> Any:
        async def timed_commit(jobs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await commit(jobs)
            finally:
                totals["transaction"] += time.perf_counter() - t0
                totals["transactions"] += 1

        return timed_commit

    def timed_lone(commit: Any) -> Any:
        async def timed_steps(steps: Any, *now: Any) -> Any:
            from stepline.store.interface import WouldBlock

            t0 = time.perf_counter()
            try:
                result = await commit(steps, *now)
            except WouldBlock:  # nothing sent: the writer commits it otherwise (timed there)
                raise
            except BaseException:
                totals["transaction"] += time.perf_counter() - t0
                totals["transactions"] += 1
                raise
            totals["transaction"] += time.perf_counter() - t0
            totals["transactions"] += 1
            return result

        return timed_steps

    def timed_submit(job: Any, *then: Any, **options: Any) -> Any:
        t0 = time.perf_counter()

        def done(_: Any) -> None:  # called back when the caller is woken
            totals["write"] += time.perf_counter() - t0

        future = original_submit(job, *then, **options)  # alone=: a pass's commit
        future.add_done_callback(done)
        return future

    from stepline import Event

    loop = asyncio.get_running_loop()
    try:
        for kind, transaction in originals.items():
            wraps = {"commit_on_loop": timed_on_loop, "commit_steps_on_loop": timed_lone}
            wrap = wraps.get(kind, timed)
            setattr(store, kind, wrap(transaction))
        writer.submit = timed_submit
    except AttributeError:
        return {}
    try:
        finished.append(loop.create_future())
        t0 = time.perf_counter()
        await app.send_async(Event(name="bench/per-step", data={"n": n}))
        await guard(finished[-1], 60)
        wall = time.perf_counter() - t0
    finally:
        for kind in originals:
            delattr(store, kind)
        del writer.submit
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
