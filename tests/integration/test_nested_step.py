"""A step called from inside another step's body (``ctx.step.run`` in the body of
``ctx.step.run``) fails that body's attempt for good (``NonRetriableError``, "steps do not
nest") instead of hanging the pass for ever: the pass waited for the outer body, the inner call
for the pass's next round (review R6 of the thirteenth stop; it hung on 953c1d1 and c79c1ba
alike; issue 6 item 4: a pass ends, whatever the user's code does)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from _polling import until

from stepline import App, Context, Event, TriggerEvent


async def test_a_step_called_inside_a_step_fails_instead_of_hanging(tmp_path: Path) -> None:
    app = App("nested", db=str(tmp_path / "s.db"))

    @app.function(id="nest", trigger=TriggerEvent("go"), retries=0)
    async def nest(ctx: Context) -> str:
        async def outer() -> str:
            return await ctx.step.run("inner", lambda: "in")

        return await ctx.step.run("outer", outer)

    worker = app.make_worker(worker_id="w", poll_interval=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 30)
        [event_id] = await app.send_async(Event("go"))

        async def ended() -> object:
            [run] = await app.runs(event_id=event_id)
            return run.status in ("COMPLETED", "FAILED") and run

        run = await until("the run to end (it hangs in its pass)", ended, timeout=20)
        assert run.status == "FAILED", (run.status, run.output)
        assert "steps do not nest" in str(run.error), run.error
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:  # the graceful stop hangs with the pass: cancelled
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        app.close()
