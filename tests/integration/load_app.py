"""The app the load tests run in several worker processes against one database (PostgreSQL, or
a SQLite file).

Functions:

- ``race-fn`` (``race/start``): one step whose body appends ``run_id pid began ended`` to the side
  file ``LOAD_LOG`` once it has run (after a short pause, so bodies of different processes
  overlap in time); the run's output is ``{"n": n, "pid": pid}`` with the pid of the process that
  ran the step.
- ``zombie-fn`` (``zombie/start``): one step whose body appends ``start run_id pid time``, sleeps
  ``LOAD_STEP_SLEEP`` seconds (real time: the test stops the process meanwhile), appends
  ``return run_id pid time`` and returns its pid: the run's output says whose result landed.

Every side-file line is one ``write`` on a file opened with ``O_APPEND`` (whole lines, whatever
the number of processes), flushed with ``fsync`` when ``LOAD_FSYNC=1`` (the SIGKILL tests).

Run as a script it serves a worker until SIGTERM and logs at INFO on stderr (the zombie test reads
"lease lost" there): ``LOAD_DB`` (a ``postgresql://`` URL or a SQLite file), ``LOAD_LOG``,
``LOAD_WORKER_ID``, ``LOAD_CONCURRENCY`` (default 20), ``LOAD_LEASE_TTL`` (default 30),
``LOAD_STEP_SLEEP`` (default 0.002 s), ``LOAD_GO`` (optional: wait for this file to exist before
serving, after writing ``ready-<pid>`` beside the side file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from stepline import App, Context, TriggerEvent

RACE_FUNCTION, RACE_EVENT = "race-fn", "race/start"
ZOMBIE_FUNCTION, ZOMBIE_EVENT = "zombie-fn", "zombie/start"


def append(line: str) -> None:
    """One whole line at the end of the side file, whatever other processes write."""
    fd = os.open(os.environ["LOAD_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        if os.environ.get("LOAD_FSYNC") == "1":
            os.fsync(fd)
    finally:
        os.close(fd)


def build_app(db: str | None) -> App:
    """The load app on the database ``db``."""
    app = App("load", db=db)

    @app.function(id=RACE_FUNCTION, trigger=TriggerEvent(RACE_EVENT), retries=0)
    async def race(ctx: Context) -> dict[str, Any]:
        pause = float(os.environ.get("LOAD_STEP_SLEEP", "0.002"))

        async def body() -> int:
            began = time.time()
            await asyncio.sleep(pause)  # real time: bodies last, so processes' bodies overlap
            append(f"{ctx.run_id} {os.getpid()} {began:.6f} {time.time():.6f}")
            return os.getpid()

        pid = await ctx.step.run("work", body)
        return {"n": ctx.event.data["n"], "pid": pid}

    @app.function(id=ZOMBIE_FUNCTION, trigger=TriggerEvent(ZOMBIE_EVENT), retries=0)
    async def zombie(ctx: Context) -> int:
        pause = float(os.environ.get("LOAD_STEP_SLEEP", "0.002"))

        async def body() -> int:
            append(f"start {ctx.run_id} {os.getpid()} {time.time():.6f}")
            await asyncio.sleep(pause)  # real time: the test stops this process meanwhile
            append(f"return {ctx.run_id} {os.getpid()} {time.time():.6f}")
            return os.getpid()

        return await ctx.step.run("compute", body)

    return app


def _wait_for_go() -> None:
    go = os.environ.get("LOAD_GO")
    if not go:
        return
    (Path(os.environ["LOAD_LOG"]).parent / f"ready-{os.getpid()}").write_text("ready")
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.005)  # real time: polls the start line; the deadline bounds it


def main() -> None:
    """Serve a worker until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = build_app(os.environ["LOAD_DB"])
    app.engine  # noqa: B018 - open the store before the start line
    _wait_for_go()
    app.run_worker(
        concurrency=int(os.environ.get("LOAD_CONCURRENCY", "20")),
        worker_id=os.environ["LOAD_WORKER_ID"],
        lease_ttl=float(os.environ.get("LOAD_LEASE_TTL", "30")),
    )
    app.close()


if __name__ == "__main__":
    main()
