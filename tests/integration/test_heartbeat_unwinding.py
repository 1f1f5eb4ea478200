"""A heartbeat of a pass whose last commit is done (bench/README.md, "A noisy warning seen").

A pass's last commit releases its lease, then the pass waits for the function to unwind (its
``finally:`` blocks run then). A heartbeat whose snapshot of the worker's passes holds such a
pass finds its lease released and reports it lost: the worker must leave the pass to end by
itself, without a warning. Before 9dc41ee the heartbeat cancelled it ("lease lost; abandoning
its pass"), and asyncio reported "Task exception was never retrieved … Suspended". Here the
function's ``finally:`` holds the pass after its suspension committed until two heartbeats that
began after the commit have been made (event-driven: no timing is assumed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest
from _polling import until

import pgtest
from stepline import App, Context, Event, TriggerEvent
from stepline.testing import MockClock


async def test_a_heartbeat_of_a_pass_that_committed_its_end_leaves_it_to_unwind(
    store_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = App("unwinding")
    app.attach(pgtest.opened_store(store_kind, tmp_path / "s.db"), MockClock(autojump=False))
    unwinding, release = asyncio.Event(), asyncio.Event()

    @app.function(id="waiter", trigger=TriggerEvent("go"))
    async def waiter(ctx: Context) -> Any:
        try:
            return await ctx.step.wait_for_event("paid", event="paid", timeout="1h")
        finally:
            if not unwinding.is_set():  # the first pass: suspended, its commit done
                unwinding.set()
                await release.wait()

    worker = app.make_worker(worker_id="w", lease_ttl=0.3, poll_interval=0.05)  # beats: 0.1 s
    task = asyncio.create_task(worker.run())
    caplog.set_level(logging.DEBUG)
    try:
        [event_id] = await app.send_async(Event("go"))
        await asyncio.wait_for(unwinding.wait(), 10)
        [run] = await app.runs(event_id=event_id)
        assert run.status == "WAITING"  # the suspension is committed, the pass still active
        assert run.run_id in worker.active
        beats = worker.heartbeats
        await until("two heartbeats of the unwinding pass", lambda: worker.heartbeats >= beats + 2)
        assert run.run_id in worker.active  # not cancelled: still unwinding
        release.set()
        await until("the pass to end", lambda: not worker.active)
        await app.send_async(Event("paid", {"ok": True}))
        done = await app.wait_for_run(run.run_id, timeout=20)
    finally:
        release.set()
        worker.stop()
        await task
        app.close()
    gc.collect()  # a task whose exception nobody retrieved says so when collected
    assert done.status == "COMPLETED"
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(
        r.getMessage() == f"run {run.run_id}: no longer leased by this worker"
        for r in caplog.records
    )  # the heartbeat did find the lease released
