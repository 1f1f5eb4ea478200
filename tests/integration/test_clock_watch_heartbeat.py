"""A worker's heartbeats never wait for a measurement of its clock against the database's
(``engine/_clock_watch.py``): a measurement whose round trip is slow (a pool with no free
connection, a reader thread queued behind slow reads, a server slow to answer) ran inside the
heartbeat loop, and the worker's leases, heartbeated every third of their TTL, expired meanwhile
(another worker took its runs over, its passes' commits refused). Only a store whose times
machines compare (PostgreSQL: ``ClockChecked``) is measured; a SQLite file is not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from _polling import until

from stepline import App, Event


async def test_a_measurement_that_does_not_end_holds_no_heartbeat(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("clock-heartbeat", db=pg_url)
    store = app.engine.store
    measuring = threading.Event()
    release = threading.Event()
    skew: Callable[..., float] = store.clock_skew  # type: ignore[attr-defined]

    def clock_skew(now: Callable[[], float] | None = None) -> float:
        measuring.set()
        release.wait(30)  # a round trip that does not end until the test lets it
        return skew(now)

    monkeypatch.setattr(store, "clock_skew", clock_skew)
    try:
        async with app.worker(lease_ttl=0.3) as worker:  # a heartbeat every 0.1 s
            try:
                await worker.ready.wait()
                await until("the worker measured its clock", measuring.is_set)
                held = worker.heartbeats
                await until("two more heartbeats", lambda: worker.heartbeats >= held + 2)
            finally:
                release.set()
    finally:
        app.close()


async def test_a_sqlite_file_is_never_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file, one machine's clock: a measurement refuses nothing there, and cost a reader
    hop beside the sends every ``CHECK_EVERY`` seconds, one waited for after a quiet spell, and
    one beside the heartbeats."""
    app = App("clock-sqlite", db=str(tmp_path / "s.db"))
    store, watch = app.engine.store, app.engine.clock_watch
    measured: list[bool] = []
    monkeypatch.setattr(store, "clock_skew", lambda now=None: measured.append(True) or 0.0)
    try:
        assert not watch.due()
        await app.send_async(Event("clock/nothing"))
        await app.remove_app("clock-none")  # (an admin write: refuse_writes)
        async with app.worker(lease_ttl=0.3) as worker:  # a heartbeat every 0.1 s
            await worker.ready.wait()
            held = worker.heartbeats
            await until("two more heartbeats", lambda: worker.heartbeats >= held + 2)
        assert measured == [] and not watch.due()
    finally:
        app.close()
