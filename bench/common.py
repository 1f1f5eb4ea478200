"""What every workload shares: sizes, the scratch folder, statistics, the result protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "@@BENCH-RESULT@@ "


@dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``quick()`` is a smoke run (the whole suite in ~20 s)."""

    floor_commits: int = 1000
    per_step_steps: int = 100
    per_step_repeats: int = 5
    throughput_runs: int = 1000
    throughput_concurrency: int = 100
    latency_samples: int = 200
    latency_warmup: int = 10
    waits: int = 10_000
    wait_events: int = 1000
    single_events: int = 200
    recovery_runs: int = 20
    lease_ttl: float = 10.0
    scale_runs: int = 100_000  # --scale-runs / STEPLINE_BENCH_SCALE_RUNS (the row: 1,000,000)
    scale_wake: int = -1  # runs that wake in the window; -1: min(100,000, scale_runs // 10)
    scale_window: float = 0.0  # seconds; 0: 60 s per 100,000 wakers
    scale_concurrency: int = 100  # the worker's concurrency (100 is its default)
    fairness_backlog: int = 100_000  # queued runs of another function (issue 8's row)

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            floor_commits=200,
            per_step_steps=100,
            per_step_repeats=1,
            throughput_runs=200,
            latency_samples=30,
            latency_warmup=3,
            waits=1000,
            wait_events=200,
            single_events=30,
            recovery_runs=5,
            lease_ttl=2.0,
            scale_runs=10_000,
            fairness_backlog=10_000,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sizes:
        return cls(**data)


def scratch_root(parent: str | None = None) -> Path:
    """A fresh temporary folder on the same disk (device) as the repository.

    The system temp folder is used when it is on the repository's device; otherwise (e.g. /tmp on
    tmpfs) the folder is created next to the repository so fsync costs what it costs for the repo.
    """
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="stepline-bench-", dir=parent))
    repo_dev = os.stat(REPO_ROOT).st_dev
    tmp = Path(tempfile.gettempdir())
    if os.stat(tmp).st_dev == repo_dev and not str(tmp).startswith("/dev/shm"):
        return Path(tempfile.mkdtemp(prefix="stepline-bench-"))
    return Path(tempfile.mkdtemp(prefix=".stepline-bench-", dir=REPO_ROOT.parent))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def emit(result: dict[str, Any]) -> None:
    """Hand a workload's figures to the parent process (one prefixed JSON line on stdout)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


async def poll_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.02
) -> None:
    """Await ``check()`` every ``interval`` seconds until it is true; TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        check_workers()
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached after {timeout}s")
        await asyncio.sleep(interval)


PG_VARIABLE = "STEPLINE_BENCH_PG"  # a PostgreSQL server URL: the workloads run on it (--pg)


def pg_server() -> str | None:
    """The PostgreSQL server the workloads run on (``python -m bench --pg``), else None."""
    return os.environ.get(PG_VARIABLE) or None


def pg_database(name: str) -> str:
    """A fresh database ``name`` on the bench's PostgreSQL server (dropped first); its URL."""
    import psycopg

    server = pg_server()
    assert server is not None, f"{PG_VARIABLE} is not set"
    dbname = "".join(c if c.isalnum() else "_" for c in name.lower())
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{dbname}"'.encode())
    return f"{server.rsplit('/', 1)[0]}/{dbname}"


def stepline_db(workdir: Path, name: str) -> str:
    """A fresh SQLite file for Stepline (default durability: WAL + synchronous=FULL), or a
    fresh PostgreSQL database with ``--pg``."""
    if pg_server():
        return pg_database(f"sl_{name}")
    path = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return f"sqlite:///{path}"


def dbos_db(workdir: Path, name: str) -> str:
    """A fresh SQLite system database URL for DBOS, or a fresh PostgreSQL database with
    ``--pg`` (the same server as Stepline's)."""
    if pg_server():
        return pg_database(f"dbos_{name}")
    path = workdir / f"{name}.dbos.sqlite"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return f"sqlite:///{path}"


async def count_runs(app: Any, function_id: str, status: str, limit: int) -> int:
    """How many runs of ``function_id`` have ``status`` (through the store, on a reader thread)."""
    from stepline.store.records import RunFilter

    engine = app.engine
    query = RunFilter(function_id=function_id, status=status, limit=limit)
    check_workers()
    records = await engine.read(engine.store.list_runs, query)
    return len(records)


async def wait_terminal(app: Any, event_id: str, timeout: float = 60.0, poll: float = 0.001) -> Any:
    """The run an event started, once it is terminal (polled every ``poll`` seconds)."""
    engine = app.engine
    deadline = time.monotonic() + timeout
    run_id: str | None = None
    while time.monotonic() < deadline:
        if run_id is None:
            runs = await app.runs(event_id=event_id, limit=1)
            run_id = runs[0].run_id if runs else None
        if run_id is not None:
            record = await engine.read(engine.store.get_run, run_id)
            if record is not None and record.status in ("COMPLETED", "FAILED", "CANCELLED"):
                return record
        check_workers()
        await asyncio.sleep(poll)
    raise TimeoutError(f"the run of event {event_id} did not end in {timeout}s")


class WorkerDied(RuntimeError):
    """The in-process worker's task ended while a workload was waiting on it."""


_worker_tasks: list[asyncio.Task[None]] = []


def check_workers() -> None:
    """Raise ``WorkerDied`` (with the cause) if a worker started by ``worker()`` has ended."""
    for task in _worker_tasks:
        if task.done():
            cause = None if task.cancelled() else task.exception()
            raise WorkerDied(f"the worker stopped: {cause!r}") from cause


@contextlib.asynccontextmanager
async def worker(app: Any, **options: Any) -> AsyncIterator[Any]:
    """Like ``app.worker(...)``, but a worker that dies makes ``guard``/``check_workers`` raise
    at once instead of leaving the workload waiting for a timeout. The garbage collector is set
    as the worker runner sets it for its worker's life (``App.run_worker``, what ``stepline
    worker`` calls: ``stepline._worker_collector``): a row measures a worker as it runs."""
    from stepline._worker_collector import worker_collector

    w = app.make_worker(**options)
    with worker_collector():
        task = asyncio.create_task(w.run())
        _worker_tasks.append(task)
        try:
            yield w
        finally:
            w.stop()
            _worker_tasks.remove(task)
            if not task.done():
                await task
            elif not task.cancelled():
                task.exception()  # retrieved (it was raised as WorkerDied's cause)


async def guard(awaitable: Awaitable[Any], timeout: float) -> Any:
    """Await ``awaitable`` but fail fast if a worker dies (checked every 50 ms)."""
    future = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.05)
            if done:
                return future.result()
            check_workers()
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing after {timeout}s")
    finally:
        if not future.done():
            future.cancel()
