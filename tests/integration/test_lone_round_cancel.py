"""A function's own ``asyncio.timeout`` around a ``run`` step (the common way to stop waiting
for something slow): the function stops waiting, the step's body runs to its end and its result
is committed, whichever path ran it (the reviewer's repros of the thirteenth stop).

Review R3 (before 953c1d1 too): the pass's round resolved the step's future the function had
cancelled, and ``InvalidStateError`` failed the pass as an engine error (a failed attempt; with
``retries=0`` the run FAILED). Review R4 (c79c1ba's lone rounds): the body ran in the function's
own task, so the function's timeout cancelled it in the middle and nothing recorded the attempt;
a body that waits is now the pass's round's from its first wait on, in a task of its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent

# the pass's commits go through the writer (SQLite) or on the loop (PostgreSQL)
BOTH = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


def _impatient(app: App, body: list[str], **options: Any) -> None:
    async def slow() -> str:
        body.append("started")
        await asyncio.sleep(0.6)  # real time: the step must outlast the function's timeout
        body.append("finished")
        return "slow"

    @app.function(id="impatient", trigger=TriggerEvent("go"), **options)
    async def impatient(ctx: Context) -> str:
        try:
            async with asyncio.timeout(0.2):
                return await ctx.step.run("slow", slow)
        except TimeoutError:
            return await ctx.step.run("after", lambda: "after")


async def _run_to_its_end(app: App) -> Any:
    [event_id] = await app.send_async(Event("go"))

    async def ended() -> Any:
        runs = await app.runs(event_id=event_id)
        return runs and runs[0].status in ("COMPLETED", "FAILED", "CANCELLED") and runs[0]

    return await until("the run to end", ended, timeout=40)


@BOTH
async def test_a_timeout_around_a_step_is_no_engine_failure(app_db: str) -> None:
    """R3: failed on 7415e04 with the run FAILED: InvalidStateError('invalid state')."""
    app = App("timeout-engine", db=app_db)
    _impatient(app, [], retries=0)
    try:
        async with app.worker(worker_id="w", poll_interval=0.05):
            run = await _run_to_its_end(app)
            history = await app.engine.read(app.engine.store.get_history, run.run_id)
        failures = [h.data for h in history if h.kind in ("FUNCTION_FAILED", "RUN_FAILED")]
        assert run.status == "COMPLETED" and not failures, (run.status, run.error, failures)
    finally:
        app.close()


@BOTH
async def test_a_timeout_around_a_step_does_not_cancel_the_steps_body(app_db: str) -> None:
    """R4: failed on c79c1ba (body ['started'], no 'slow' step)."""
    app = App("timeout-body", db=app_db)
    body: list[str] = []
    _impatient(app, body)
    try:
        async with app.worker(worker_id="w", poll_interval=0.05):
            run = await _run_to_its_end(app)
            steps = await app.engine.read(app.engine.store.get_steps, run.run_id)
            await asyncio.sleep(1.0)  # real time: a body still running would end meanwhile
        shown = {s.step_id: s.status for s in steps}
        assert body == ["started", "finished"] and shown.get("slow") == "COMPLETED", (
            f"the step's body: {body}; the steps after the run ended: {shown} (run {run.status}"
            f" {run.output!r})"
        )
    finally:
        app.close()
