"""A lease attempt whose commit's outcome was unknown to the worker (``StoreUnavailable`` after
the server committed it: a restart ended the session with the reply in flight) leased runs the
worker never heard of. Its next lease attempts did not take runs leased to its own id, so they
waited for their lease's TTL (the suite's note on test_crash.py::test_database_restart_mid_run:
~22 s idle). The worker now gives back its own leases that have no pass here at its next lease
attempt made with no pass running (as a restart with the same id does), and leases them again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.errors import StoreUnavailable


async def test_runs_leased_by_an_attempt_the_worker_never_heard_of_run_within_their_ttl(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("unheard", db=pg_url)

    @app.function(id="quick", trigger=TriggerEvent("quick/go"))
    async def quick(ctx: Context) -> Any:
        return await ctx.step.run("one", lambda: 1)

    try:
        # queued before the worker runs: its first lease attempt takes them (no eager lease)
        event_ids = await app.send_async([Event(name="quick/go") for _ in range(3)])
        writer = app.engine.writer
        write = writer.write
        unheard: list[Any] = []

        async def reply_lost(job: Any, **options: Any) -> Any:
            result = await write(job, **options)  # committed
            if not unheard and "_lease_job" in job.__qualname__ and result[0]:
                unheard.append(result[0])  # the reply never reaches the worker
                raise StoreUnavailable("the commit's outcome is unknown: server closed", "db")
            return result

        monkeypatch.setattr(writer, "write", reply_lost)
        # a TTL far beyond the test's deadline: only a give-back lets the runs go on
        worker = Worker(
            app.engine, worker_id="w", poll_interval=0.05, lease_ttl=600.0, handoffs=False
        )
        task = asyncio.create_task(worker.run())

        async def completed() -> bool:
            runs = [r for e in event_ids for r in await app.runs(event_id=e)]
            return len(runs) == 3 and all(r.status == "COMPLETED" for r in runs)

        try:
            await until("the runs of the unheard lease completed", completed, timeout=30)
        finally:
            worker.stop()
            await task
        assert unheard, "no lease attempt's reply was lost"
    finally:
        app.close()
