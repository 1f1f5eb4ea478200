"""A store that fails for good (read-only, corrupt) stops a worker: it logs the error once, with
no traceback, and ``Worker.run()`` raises the ``StoreError``; no run is charged an attempt
(issue 6 review item 1)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, StoreError, StoreUnavailable, TriggerEvent
from stepline.store import SQLiteStore
from stepline.store.interface import StoreTx
from stepline.store.records import RunFilter
from stepline.testing import TestEngine


class ReadOnlyLater:
    """A SQLite store whose COMMITs fail as a read-only file's do once ``failing`` is set."""

    def __init__(self, path: Path) -> None:
        self.inner = SQLiteStore(path, synchronous="NORMAL")
        self.failing = False

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        with self.inner.transaction() as tx:
            yield tx
            self._check()

    @contextmanager
    def optimistic_transaction(self) -> Iterator[StoreTx]:
        with self.inner.optimistic_transaction() as tx:
            yield tx
            self._check()  # rolled back (Replay), then made carefully: fails there too

    def _check(self) -> None:
        if self.failing:
            error = sqlite3.OperationalError("attempt to write a readonly database")
            error.sqlite_errorcode = 8  # type: ignore[attr-defined]
            error.sqlite_errorname = "SQLITE_READONLY"  # type: ignore[attr-defined]
            raise error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_store_that_fails_for_good_stops_the_worker_without_a_traceback(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 review item 1: a non-transient store error in a pass was logged as "pass crashed"
    # with a traceback (or ended the worker with a raw sqlite3 exception)
    caplog.set_level(logging.DEBUG, logger="stepline")
    started, release = asyncio.Event(), asyncio.Event()

    @app.function(id="slow", trigger=TriggerEvent("slow"))
    async def slow(ctx: Context) -> Any:
        async def body() -> str:
            started.set()
            await release.wait()
            return "done"

        return await ctx.step.run("body", body)

    store = ReadOnlyLater(tmp_path / "ro.db")
    workers = []

    async def serve() -> None:
        async with TestEngine(app, store=store) as t:  # type: ignore[arg-type]
            worker = t.worker
            assert worker is not None
            workers.append(worker)
            await t.send(Event("slow"))
            await asyncio.wait_for(started.wait(), 30)
            store.failing = True
            release.set()  # the step ends; its commit is refused for good
            await until("the worker to stop", lambda: worker.failed is not None, timeout=30)

    with pytest.raises(StoreError) as caught:
        await serve()
    [worker] = workers
    assert not isinstance(caught.value, StoreUnavailable)
    assert "readonly" in str(caught.value) and str(tmp_path / "ro.db") in str(caught.value)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"worker {worker.worker_id}: {caught.value}; stopping"
    ]
    assert all(r.exc_info is None for r in caplog.records)
    store.failing = False
    try:  # read after the engine closed the store: its connection is opened again, closed here
        [run] = store.inner.list_runs(RunFilter())
    finally:
        store.inner.close()
    assert run.attempt == 0  # not the run's fault: no attempt counted
