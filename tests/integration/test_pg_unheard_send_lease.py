"""Review R5 LOW (fourteenth stop, the reviewer's repro): pg 625412d gave back the leases of a
lease write whose reply was lost (``Worker.lost_a_lease``: a lease attempt, a lease by name, a
claim) at the worker's next lease attempt. A ``send_async`` in the worker's own loop also leases
runs for it, in the send's transaction (``lease_new_runs``); when that commit's reply is lost
(``StoreUnavailable``: the outcome unknown), ``_deliver`` calls ``adopt(())`` only: the runs it
created are leased to the worker, which never heard of them, and wait for their lease's TTL
(here 600 s), as the lease attempts' did before 625412d. Fixed: ``_deliver`` tells the worker
(``lost_a_lease``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.errors import StoreUnavailable


async def test_runs_leased_by_a_send_whose_reply_was_lost_run_within_their_ttl(
    pg_url: str,
) -> None:
    app = App("unheard-send", db=pg_url)

    @app.function(id="quick", trigger=TriggerEvent("quick/go"))
    async def quick(ctx: Context) -> Any:
        return await ctx.step.run("one", lambda: 1)

    try:
        worker = Worker(
            app.engine, worker_id="w", poll_interval=0.05, lease_ttl=600.0, handoffs=False
        )
        task = asyncio.create_task(worker.run())
        try:
            await worker.ready.wait()
            await until("the worker asleep", lambda: worker._named.sleeping)
            writer = app.engine.writer
            submit = writer.submit
            lost: list[Any] = []

            def reply_lost(job: Any, *args: Any, **kwargs: Any) -> Any:
                if lost or "_start_job" not in job.__qualname__:
                    return submit(job, *args, **kwargs)
                # committed, but its reply never reaches the sender: nor its continuation
                # (``then``: the send's results delivered as the reply is read)
                done = submit(job, alone=kwargs.get("alone", False))
                outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

                def committed(write: asyncio.Future[Any]) -> None:
                    lost.append(write.result())  # committed; the reply never reaches us
                    outcome.set_exception(
                        StoreUnavailable("the commit's outcome is unknown: server closed", "db")
                    )

                done.add_done_callback(committed)
                return outcome

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(writer, "submit", reply_lost)
                with pytest.raises(StoreUnavailable):
                    await app.send_async(Event(name="quick/go", id="q-1"))
            [(_, leased, _, _)] = lost
            assert leased(), "the send's transaction leased nothing for the worker"

            async def completed() -> bool:
                runs = await app.runs(function_id="quick")
                return len(runs) == 1 and runs[0].status == "COMPLETED"

            await until("the run the lost send leased to the worker to complete", completed, 30)
        finally:
            worker.stop()
            await task
    finally:
        app.close()
