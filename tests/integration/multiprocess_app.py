"""The app the multi-process tests run in several processes on one database (a SQLite file or a
``postgresql://`` URL).

Functions:

- ``cron-a``/``cron-b``/``cron-c``: ``TriggerCron("* * * * *")``; ``cron-yearly``:
  ``TriggerCron("0 0 1 1 *")`` (never due during a test unless the test arms it). Each records
  ``function_id run_id pid tick`` in the side file ``cron.log`` from a step.
- ``limited`` (``limited/job``, ``concurrency=2``) and ``unlimited`` (``free/job``, no limit, the
  control): two steps each; a step body counts itself in and out of ``<function>.count`` under an
  exclusive ``flock`` (``current peak``) and appends ``in|out pid current time`` to
  ``<function>.log``, so the overlap is measured by the steps themselves, across processes.
- ``dup-fn`` (``dup/event``): records its run in ``dup.log``.
- Flow control decided when an event is sent (``flow`` senders, no worker needed): ``idem-fn``
  (``flow/idem``, ``idempotency="event.data.key"``: one run per key), ``rate-fn``
  (``flow/rate``, ``RateLimit(30, "24h", key)``: a burst of ``30 // 10 + 1`` = 4 runs per key,
  the next one 48 min later), ``single-fn`` (``flow/single``, ``Singleton(key)``, skip mode: one
  run per key while it has not ended), ``batch-fn`` (``flow/batch``, ``BatchEvents(3, "1h",
  key="event.data.group")``: a run per 3 events, the rest waiting in the batch) and
  ``throttle-fn`` (``flow/throttle``, ``Throttle(3, "24h", key="event.data.group")``: every event
  starts a run, 3 due at once, the next ones 8 h apart), their events all of one group (every
  sender on one batch and one bucket).

Run as a script: ``worker`` serves a worker until SIGTERM; ``send`` sends one ``dup/event`` per
id in ``MP_SEND_IDS`` (comma-separated), one event per transaction, and writes the returned
internal ids (and when it began and ended) as JSON to ``MP_DIR/sent-<pid>.json``; ``flow`` sends,
for each key of ``MP_FLOW_KEYS`` in turn, one event of each ``FLOW_EVENTS`` name,
``MP_FLOW_ROUNDS`` times (one event per transaction), and writes the same JSON. Both first
write ``MP_DIR/ready-<pid>``, then wait for the file ``MP_GO``: every process starts at once.
Environment: ``MP_DB`` (SQLite file or PostgreSQL URL), ``MP_DIR`` (side files), ``MP_GO``,
``MP_WORKER_ID``, ``MP_CONCURRENCY`` (default 1), ``MP_STEP_SLEEP`` (default 0.1 s).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from stepline import (
    App,
    BatchEvents,
    Context,
    Event,
    RateLimit,
    Singleton,
    Throttle,
    TriggerCron,
    TriggerEvent,
)

CRON_FUNCTIONS = ("cron-a", "cron-b", "cron-c")
MINUTELY = "* * * * *"
YEARLY_FUNCTION = "cron-yearly"
YEARLY = "0 0 1 1 *"
LIMITED, UNLIMITED, DUP = "limited", "unlimited", "dup-fn"
LIMIT = 2
IDEM, RATE, SINGLE = "idem-fn", "rate-fn", "single-fn"
RATE_LIMIT = 30  # a burst of RATE_LIMIT // 10 + 1 runs per key, then one every 48 minutes
RATE_BURST = RATE_LIMIT // 10 + 1
BATCH, THROTTLE = "batch-fn", "throttle-fn"
BATCH_SIZE = 3  # a batch's run starts when it has this many events (its timeout: 1 h)
THROTTLE_LIMIT = 3  # runs due at once; the next ones 24 h / 3 apart
FLOW_EVENTS = ("flow/idem", "flow/rate", "flow/single", "flow/batch", "flow/throttle")


def side(name: str) -> Path:
    return Path(os.environ["MP_DIR"]) / name


def append(name: str, line: str) -> None:
    with side(name).open("a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")


def track(name: str, delta: int) -> int:
    """Count a step in (+1) or out (-1) of ``name``; returns how many are in now."""
    with side(f"{name}.count").open("a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        f.seek(0)
        fields = f.read().split()
        current, peak = (int(fields[0]), int(fields[1])) if fields else (0, 0)
        current += delta
        peak = max(peak, current)
        f.seek(0)
        f.truncate()
        f.write(f"{current} {peak}\n")
        f.flush()
        kind = "in" if delta > 0 else "out"
        with side(f"{name}.log").open("a", encoding="utf-8") as log:
            log.write(f"{kind} {os.getpid()} {current} {time.time():.6f}\n")
    return current


def build_app(db: str | None) -> App:
    """The app on the SQLite file ``db``."""
    app = App("multiproc", db=db)

    def cron_function(function_id: str, cron: str) -> None:
        @app.function(id=function_id, trigger=TriggerCron(cron), retries=0)
        async def fired(ctx: Context) -> Any:
            tick = ctx.event.data["cron"], ctx.event.ts
            line = f"{function_id} {ctx.run_id} {os.getpid()} {ctx.event.ts}"
            await ctx.step.run("record", append, "cron.log", line)
            return tick

    for function_id in CRON_FUNCTIONS:
        cron_function(function_id, MINUTELY)
    cron_function(YEARLY_FUNCTION, YEARLY)

    def tracked_function(function_id: str, event: str, concurrency: int | None) -> None:
        @app.function(id=function_id, trigger=TriggerEvent(event), concurrency=concurrency)
        async def tracked(ctx: Context) -> Any:
            pause = float(os.environ.get("MP_STEP_SLEEP", "0.1"))

            async def body() -> int:
                inside = track(function_id, +1)
                await asyncio.sleep(pause)  # real time: steps last, so processes' steps overlap
                track(function_id, -1)
                return inside

            return [await ctx.step.run("first", body), await ctx.step.run("second", body)]

    tracked_function(LIMITED, "limited/job", LIMIT)
    tracked_function(UNLIMITED, "free/job", None)

    @app.function(id=DUP, trigger=TriggerEvent("dup/event"))
    async def dup(ctx: Context) -> Any:
        append("dup.log", f"{ctx.run_id} {ctx.event.id} {os.getpid()}")
        return ctx.event.id

    @app.function(id=IDEM, trigger=TriggerEvent("flow/idem"), idempotency="event.data.key")
    async def idem(ctx: Context) -> Any:
        return ctx.event.data["key"]

    rate = RateLimit(RATE_LIMIT, "24h", key="event.data.key")

    @app.function(id=RATE, trigger=TriggerEvent("flow/rate"), rate_limit=rate)
    async def rated(ctx: Context) -> Any:
        return ctx.event.data["key"]

    single = Singleton(key="event.data.key")

    @app.function(id=SINGLE, trigger=TriggerEvent("flow/single"), singleton=single)
    async def singled(ctx: Context) -> Any:
        return ctx.event.data["key"]

    batch = BatchEvents(BATCH_SIZE, timeout="1h", key="event.data.group")

    @app.function(id=BATCH, trigger=TriggerEvent("flow/batch"), batch_events=batch)
    async def batched(ctx: Context) -> Any:
        return len(ctx.events)

    throttle = Throttle(THROTTLE_LIMIT, "24h", key="event.data.group")

    @app.function(id=THROTTLE, trigger=TriggerEvent("flow/throttle"), throttle=throttle)
    async def throttled(ctx: Context) -> Any:
        return ctx.event.data["key"]

    return app


def _ready_and_wait() -> None:
    side(f"ready-{os.getpid()}").write_text("ready")
    go = Path(os.environ["MP_GO"])
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.001)  # real time: polls the start line; the deadline bounds it


def main(mode: str) -> None:
    app = build_app(os.environ["MP_DB"])
    app.engine  # noqa: B018 - open the store before the start line
    if mode == "worker":
        _ready_and_wait()
        app.run_worker(
            concurrency=int(os.environ.get("MP_CONCURRENCY", "1")),
            worker_id=os.environ["MP_WORKER_ID"],
            lease_ttl=5.0,
            poll_interval=0.05,
        )
    elif mode == "send":
        ids = os.environ["MP_SEND_IDS"].split(",")
        events = [Event("dup/event", {"key": key}, id=key) for key in ids]
        _ready_and_wait()
        began = time.time()
        internal = []
        for event in events:
            internal.append(app.send(event)[0])
            # SQLite's busy handler backs off while the lock holder commits again at once: a
            # short pause lets the other senders in, so copies of one id really interleave
            time.sleep(random.uniform(0, 0.004))  # real time: see above
        window = {"ids": internal, "began": began, "ended": time.time()}
        side(f"sent-{os.getpid()}.json").write_text(json.dumps(window))
    elif mode == "flow":
        keys = os.environ["MP_FLOW_KEYS"].split(",")
        rounds = int(os.environ.get("MP_FLOW_ROUNDS", "2"))
        _ready_and_wait()
        began = time.time()
        internal = []
        for _ in range(rounds):
            for key in keys:
                for name in FLOW_EVENTS:
                    data = {"key": key, "group": "all"}
                    internal.append(app.send(Event(name, data))[0])
                    time.sleep(random.uniform(0, 0.002))  # real time: lets senders interleave
        window = {"ids": internal, "began": began, "ended": time.time()}
        side(f"sent-{os.getpid()}.json").write_text(json.dumps(window))
    else:
        sys.exit(f"unknown mode {mode!r}")
    app.close()


if __name__ == "__main__":
    main(sys.argv[1])
