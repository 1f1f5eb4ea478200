"""A store that becomes unavailable (disk full, I/O errors) never ends a worker: it logs once,
backs off, and resumes by itself when the store recovers; senders get ``StoreUnavailable``, never
a raw ``sqlite3`` exception, and nothing acknowledged is lost (issue 6 item 7)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, StoreUnavailable, TriggerEvent
from stepline.store import SQLiteStore
from stepline.store.interface import StoreTx
from stepline.testing import TestEngine

READS = {
    "load_run",
    "get_run",
    "list_runs",
    "get_steps",
    "get_history",
    "get_events",
    "list_skips",
    "paused_functions",
    "next_due_at",
}


class FailingStore:
    """A SQLite store that fails on command as a full disk does: while ``failing``, every
    transaction's COMMIT and every read raise SQLite's own "database or disk is full" (the
    transaction is rolled back). ``failures`` counts the operations refused."""

    def __init__(self, path: Path) -> None:
        self.inner = SQLiteStore(path, synchronous="NORMAL")
        self.failing = False
        self.failures = 0
        self._lock = threading.Lock()

    def _check(self) -> None:
        if not self.failing:
            return
        with self._lock:
            self.failures += 1
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = 13  # type: ignore[attr-defined]
        error.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
        raise error

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        with self.inner.transaction() as tx:
            yield tx
            self._check()  # the COMMIT fails: the inner transaction is rolled back

    @contextmanager
    def optimistic_transaction(self) -> Iterator[StoreTx]:
        with self.inner.optimistic_transaction() as tx:
            yield tx
            self._check()  # rolled back (Replay), then made carefully: fails there too

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in READS:
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return attr(*args, **kwargs)

        return read


async def test_an_unavailable_store_does_not_end_the_worker(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 item 7: "database or disk is full" raised by COMMIT inside the lease job ended the
    # worker loop; send raised the raw sqlite3 error
    caplog.set_level(logging.DEBUG, logger="stepline.worker")
    step_started, release = asyncio.Event(), asyncio.Event()
    executions = {"slow": 0}

    @app.function(id="echo", trigger=TriggerEvent("echo"))
    async def echo(ctx: Context) -> Any:
        return await ctx.step.run("echo", lambda: ctx.event.data["n"])

    @app.function(id="slow", trigger=TriggerEvent("slow"))
    async def slow(ctx: Context) -> Any:
        async def body() -> str:
            executions["slow"] += 1
            step_started.set()
            await release.wait()
            return "slow done"

        return await ctx.step.run("body", body)

    store = FailingStore(tmp_path / "flaky.db")
    async with TestEngine(app, store=store) as t:  # type: ignore[arg-type]
        worker = t.worker
        assert worker is not None
        before = await t.trigger(Event("echo", {"n": 1}))
        assert before.output == 1
        [slow_event] = await t.send(Event("slow"))
        await asyncio.wait_for(step_started.wait(), 30)

        store.failing = True
        try:
            with pytest.raises(StoreUnavailable, match="database or disk is full"):
                await app.send_async(Event("echo", {"n": 2}))
            with pytest.raises(StoreUnavailable, match="database or disk is full"):
                await asyncio.to_thread(app.send, Event("echo", {"n": 3}))
        finally:
            release.set()  # the slow step ends; its commit fails
        # the worker keeps trying (lease attempts, reads, the slow pass's commit) and stays up
        await until("the worker to retry", lambda: worker.outage.failures >= 4, timeout=30)
        assert worker.outage.outages == 1

        store.failing = False  # the store recovers: the worker resumes by itself
        after = await t.trigger(Event("echo", {"n": 4}))
        assert after.output == 4
        [slow_run] = await t.runs(event_id=slow_event)
        slow_done = await t.wait_for_run(slow_run.run_id)
        assert slow_done.output == "slow done"
        # its result was never committed nor acknowledged: the step ran again after the outage
        assert executions["slow"] == 2
        # nothing acknowledged is lost; nothing refused was stored
        runs = await t.runs(function_id="echo")
        assert sorted(r.output for r in runs) == [1, 4]

    # logged once when the outage began and once when it ended, whatever the retries
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "stepline.worker" and r.levelno >= 30
    ]
    assert len(warnings) == 2, warnings
    assert "database or disk is full" in warnings[0] and "retrying with backoff" in warnings[0]
    assert "the store is available again" in warnings[1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (Linux, as root); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Use up every free byte of ``disk``."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: closing it writes nothing more
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


async def test_a_full_disk_refuses_sends_and_the_worker_resumes_when_space_is_freed(
    app: App, small_disk: Path
) -> None:
    # issue 6 item 7, on a real full file system
    @app.function(id="echo", trigger=TriggerEvent("echo"))
    async def echo(ctx: Context) -> Any:
        return await ctx.step.run("echo", lambda: len(ctx.event.data["blob"]))

    blob = "x" * 200_000
    async with TestEngine(app, store="sqlite", path=small_disk / "stepline.db") as t:
        worker = t.worker
        assert worker is not None
        before = await t.trigger(Event("echo", {"blob": "small"}))
        filler = fill(small_disk)
        try:
            with pytest.raises(StoreUnavailable, match="database or disk is full"):
                await app.send_async(Event("echo", {"blob": blob}))
            with pytest.raises(StoreUnavailable, match="database or disk is full"):
                await asyncio.to_thread(app.send, Event("echo", {"blob": blob}))
        finally:
            filler.unlink()
        after = await t.trigger(Event("echo", {"blob": blob}))
        assert after.output == len(blob)
        runs = await t.runs(function_id="echo")
        assert sorted(r.run_id for r in runs) == sorted([before.run_id, after.run_id])
