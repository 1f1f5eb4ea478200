"""The worker's polls are ``unordered`` writer jobs (``BatchWriter.submit``): its lease job and
its heartbeat, whose callers await them and which are fenced against every other write as
another process's would be. A pass's commit submitted while the writer thread makes one is
committed on the loop beside it (PostgreSQL; tests/unit/test_writer_loop.py), never queued
behind it. A pass's own commits stay ordered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.writer import BatchWriter


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
async def test_the_workers_lease_and_heartbeat_jobs_are_unordered_and_pass_commits_not(
    app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted: list[tuple[str, bool]] = []
    submit = BatchWriter.submit

    def recorded(self: BatchWriter, job: Any, *args: Any, **kwargs: Any) -> Any:
        submitted.append((job.__qualname__, kwargs.get("unordered", False)))
        return submit(self, job, *args, **kwargs)

    monkeypatch.setattr(BatchWriter, "submit", recorded)
    app = App("unordered", db=app_db)

    @app.function(id="steps", trigger=TriggerEvent("go"))
    async def steps(ctx: Context) -> int:
        for i in range(3):
            await ctx.step.run(f"s{i}", lambda i=i: i)
        return 3

    worker = app.make_worker(worker_id="w", lease_ttl=0.3, poll_interval=0.05)  # beats: 0.1 s
    task = asyncio.create_task(worker.run())
    try:
        [event_id] = await app.send_async(Event("go"))
        [run] = await until("the run", lambda: app.runs(event_id=event_id))
        done = await app.wait_for_run(run.run_id, timeout=20)
        await until("a heartbeat", lambda: worker.heartbeats >= 1)
    finally:
        worker.stop()
        await task
        app.close()
    assert done.status == "COMPLETED"
    kinds = {name.split(".<locals>")[0]: unordered for name, unordered in submitted}
    assert kinds["Worker._lease_job"] is True
    assert kinds["Worker._heartbeat_job"] is True
    assert {unordered for name, unordered in submitted if name.startswith("_pass_job")} == {False}
