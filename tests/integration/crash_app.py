"""The app the crash tests run in a worker subprocess (and import to send events and read runs).

``crash-fn`` (triggered by ``crash/start``) chains five ``step.run`` steps. Each step body appends
``run_id step_id attempt pid time`` to the side file ``CRASH_LOG`` (written, flushed and fsynced
before the step returns), sleeps ``CRASH_STEP_SLEEP`` seconds to widen the crash window, and
returns a value derived from the event data, the step index and the previous step's result, so a
wrong or mixed-up memo shows in the output. After the last step the function body (not a step, so
it runs again on every replay) appends ``run_id __end__ - pid time``: proof that all five step
results were committed, since a step result reaches the function only after its commit.

Run as a script it serves a worker until SIGTERM: ``CRASH_DB`` (SQLite file), ``CRASH_LOG``,
``CRASH_WORKER_ID``, ``CRASH_CONCURRENCY`` (default 20), ``CRASH_LEASE_TTL`` (default 2.0).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import time
from typing import Any

from stepline import App, Context, TriggerEvent

FUNCTION_ID = "crash-fn"
EVENT_NAME = "crash/start"
STEPS = 5
END_MARK = "__end__"


def step_value(n: int, index: int, previous: int) -> int:
    """What step ``index`` of the run for ``{"n": n}`` returns, given the previous result."""
    return (previous * 31 + n * 7 + index) % 1_000_003


def expected_output(n: int) -> dict[str, Any]:
    """The output of the run for ``{"n": n}``."""
    values: list[int] = []
    previous = n
    for index in range(STEPS):
        previous = step_value(n, index, previous)
        values.append(previous)
    return {"n": n, "values": values}


def _append(line: str) -> None:
    path = os.environ["CRASH_LOG"]
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def build_app(db: str | None) -> App:
    """The crash app on the SQLite file ``db``."""
    app = App("crash", db=db)

    @app.function(id=FUNCTION_ID, trigger=TriggerEvent(EVENT_NAME))
    async def crash_fn(ctx: Context) -> dict[str, Any]:
        n = int(ctx.event.data["n"])
        pause = float(os.environ.get("CRASH_STEP_SLEEP", "0.01"))

        async def body(step_id: str, index: int, previous: int) -> int:
            _append(f"{ctx.run_id} {step_id} {ctx.attempt} {os.getpid()} {time.time():.6f}")
            # 0 to 1.75 x pause (mean 0.875 x), so runs drift apart and kills land in every
            # phase of a pass: mid-step, mid-commit, between steps
            # real time: the step lasts, so that a SIGKILL lands mid-step
            await asyncio.sleep(pause * ((n * 37 + index * 11) % 8) / 4)
            return step_value(n, index, previous)

        values: list[int] = []
        previous = n
        for index in range(STEPS):
            step_id = f"s{index}"
            previous = await ctx.step.run(step_id, body, step_id, index, previous)
            values.append(previous)
        _append(f"{ctx.run_id} {END_MARK} - {os.getpid()} {time.time():.6f}")
        return {"n": n, "values": values}

    return app


app = build_app(os.environ.get("CRASH_DB"))


def main() -> None:
    """Serve a worker until SIGINT/SIGTERM; SIGUSR1 writes every thread's stack to stderr (a
    worker that does not stop: ``_subprocesses.sigterm``)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    level = os.environ.get("CRASH_LOG_LEVEL")  # to look into a failure: DEBUG, INFO
    if level:
        logging.basicConfig(level=level, format="%(created).3f %(name)s %(levelname)s %(message)s")
    app.run_worker(
        concurrency=int(os.environ.get("CRASH_CONCURRENCY", "20")),
        worker_id=os.environ["CRASH_WORKER_ID"],
        lease_ttl=float(os.environ.get("CRASH_LEASE_TTL", "2.0")),
    )


if __name__ == "__main__":
    main()
