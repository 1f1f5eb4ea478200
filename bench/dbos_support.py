"""DBOS counterparts of the Stepline workloads (imported only in DBOS subprocesses).

DBOS keeps one global instance per process and registers workflows at import, so every DBOS
workflow the benchmarks use is defined here, at module level; ``launch(url)`` starts DBOS on a
fresh SQLite system database and ``shutdown()`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from dbos import DBOS

from stepline._worker_collector import worker_collector

APP_NAME = "stepline-bench"

# Hooks the workloads set before starting workflows (the bodies below call them).
latency_marks: dict[int, asyncio.Future[float]] = {}
recovery_sleep = 0.0
recovery_started: Callable[[], None] = lambda: None  # noqa: E731

# the garbage collector's settings while DBOS runs, put back by ``shutdown``
_collector = contextlib.ExitStack()


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("dbos")


def launch(url: str, **extra: Any) -> None:
    """Start DBOS on the SQLite system database ``url``, the garbage collector set as Stepline's
    rows run their worker with (``bench.common.worker``: ``stepline._worker_collector``), so both
    sides of a row run under the same collector settings."""
    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: dict[str, Any] = {"name": APP_NAME, "system_database_url": url, "log_level": "WARNING"}
    config.update(extra)
    DBOS(config=config)  # type: ignore[arg-type]
    DBOS.launch()
    _collector.enter_context(worker_collector())


def shutdown() -> None:
    DBOS.destroy(workflow_completion_timeout_sec=0)
    _collector.close()


@DBOS.step()
async def noop_step(i: int) -> int:
    return i


@DBOS.workflow()
async def steps_workflow(n: int) -> int:
    """``n`` trivial steps, one after another (each step's result is persisted by DBOS)."""
    for i in range(n):
        await noop_step(i)
    return n


@DBOS.step()
async def mark_step(key: int) -> int:
    future = latency_marks.pop(key, None)
    if future is not None and not future.done():
        future.set_result(time.perf_counter())
    return key


@DBOS.workflow()
async def latency_workflow(key: int) -> int:
    return await mark_step(key)


@DBOS.step()
async def slow_step(i: int) -> int:
    recovery_started()
    if recovery_sleep:
        await asyncio.sleep(recovery_sleep)
    return i


@DBOS.workflow()
async def recovery_workflow(i: int) -> int:
    """Step a (trivial), step b (sleeps while the first worker runs it), step c (trivial)."""
    await noop_step(i)
    await slow_step(i)
    await noop_step(i + 1)
    return i
