"""Instructions per cancelling event, counted in all: the deterministic measure behind the
cancel-on rows, which this 2-core host's noise hides below ~20 %.

``python -m bench.cancel_instructions [--runs N] [--batches B] [--cold] [--non-matching]
[--sleeping] [--wal]`` runs itself under ``valgrind --tool=callgrind`` (instrumentation off
at start): the bench's shape (``bench.cancel_on.make_app``: N QUEUED cancellable runs made in
the process; ``--sleeping``: SLEEPING in their step, a worker ran them into it and stopped, as
on the bench's second database), a non-matching and a matching warm-up batch, then,
instrumented, B batches of 1,000 ``order/cancelled`` events each matching one run
(``--non-matching``: none), sent with ``send_async``, and whatever they left owed written as
a worker writes it (``Engine.announce_owed``, when the code has it). Prints instructions per
event for each thread (the event loop, the writer) and their sum: what a cancelling event
costs, now or later. The events are built before the instrumentation starts (the bench's
timing leaves their construction out too). ``--wal``: no valgrind; the WAL frames each
measured batch wrote (the WAL truncated before each) and the process's CPU per event.

To compare two trees, run it from each (``PYTHONPATH=<tree>/src:<this checkout>``): the numbers
of one tree repeat within ~0.3 %.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import glob
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.cancel_on import (
    BATCH,
    CANCELLED,
    CREATED,
    FUNCTION_ID,
    create_runs,
    make_app,
    orders,
)
from bench.common import count_runs, worker

PAGE = 4096 + 24  # a WAL frame: its page and its header


def _instrument(on: bool) -> None:
    flag = "on" if on else "off"
    command = ["callgrind_control", "-i", flag, str(os.getpid())]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


async def _drain(app: Any) -> None:
    """Write what the batches left owed, as a worker's housekeeping does (older versions)."""
    engine = app.engine
    announce = getattr(engine, "announce_owed", None)
    if announce is None:
        return
    while (await engine.writer.write(lambda tx: announce(tx, engine.clock.now())))[1]:
        pass


def _frames(wal: Path) -> int:
    return round(wal.stat().st_size / PAGE)


def _checkpoint(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


async def _into_sleep(app: Any, n: int) -> None:
    """``n`` runs made and run into their sleep step by a worker, which then stops."""
    async with worker(app, concurrency=200):
        await create_runs(app, n)
        while await count_runs(app, FUNCTION_ID, "SLEEPING", n + 1) < n:
            await asyncio.sleep(0.25)
    gc.collect()  # the worker's garbage (as bench.cancel_on does)


async def _child(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cancel-instructions-"))
    app, path = make_app(workdir, "instructions")
    try:
        await app.send_async(orders(CREATED, "w", 0, 100))
        await app.send_async(orders(CANCELLED, "w", 0, 100))
        if args.sleeping:
            await _into_sleep(app, args.runs)
        else:
            await create_runs(app, args.runs)
        await app.send_async(orders(CANCELLED, "x", 0, BATCH))  # non-matching warm-up
        await app.send_async(orders(CANCELLED, "o", 0, BATCH))  # matching warm-up
        await _drain(app)
        prefix = "x" if args.non_matching else "o"
        batches = [orders(CANCELLED, prefix, b * BATCH, BATCH) for b in range(1, args.batches + 1)]
        if args.cold:
            from stepline.expressions import forget_matchers

            forget_matchers()
        wal = Path(f"{path}-wal")
        frames: list[int] = []
        before = resource.getrusage(resource.RUSAGE_SELF)
        if not args.wal:
            _instrument(True)
        for batch in batches:
            if args.wal:
                _checkpoint(path)
            await app.send_async(batch)
            if args.wal:
                frames.append(_frames(wal))
        await _drain(app)
        if not args.wal:
            _instrument(False)
            return
        after = resource.getrusage(resource.RUSAGE_SELF)
        events = len(batches) * BATCH
        user = (after.ru_utime - before.ru_utime) / events * 1e6
        system = (after.ru_stime - before.ru_stime) / events * 1e6
        print(f"WAL frames a batch {frames}; CPU {user:.1f} user + {system:.1f} system µs/event")
    finally:
        app.close()


def _totals(out: str) -> dict[int, int]:
    """Instructions by thread, over the files callgrind wrote at ``out``."""
    found: dict[int, int] = {}
    for name in glob.glob(f"{out}*"):
        text = Path(name).read_text()
        total = re.search(r"^totals: (\d+)", text, re.M)
        thread = re.search(r"^thread: (\d+)", text, re.M)
        if total is not None:
            key = int(thread.group(1)) if thread is not None else 1
            found[key] = found.get(key, 0) + int(total.group(1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cancel_instructions")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="empty the matcher cache first")
    parser.add_argument("--non-matching", action="store_true")
    parser.add_argument("--sleeping", action="store_true", help="runs SLEEPING, not QUEUED")
    parser.add_argument("--wal", action="store_true", help="WAL frames and CPU, no valgrind")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < (args.batches + 1) * BATCH:
        parser.error(f"--runs must be at least {(args.batches + 1) * BATCH} (a warm-up batch)")
    if args.child or args.wal:
        asyncio.run(_child(args))
        return
    with tempfile.TemporaryDirectory(prefix="cancel-callgrind-") as scratch:
        out = f"{scratch}/cg.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.cancel_instructions",
            "--child",
            *sys.argv[1:],
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        events = args.batches * BATCH
        by_thread = _totals(out)
    for thread, total in sorted(by_thread.items()):
        if total:
            print(f"thread {thread}: {total / events / 1000:.1f}k instructions/event")
    print(f"in all: {sum(by_thread.values()) / events / 1000:.1f}k instructions/event")


if __name__ == "__main__":
    main()
