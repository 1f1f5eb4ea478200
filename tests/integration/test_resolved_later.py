"""A wait resolved by an event whose sender is killed (SIGKILL) as soon as the send returned
(SQLite and PostgreSQL: the sender writes the event, the wait's resolution, the step's output
and WAIT_MATCHED in its transaction; SQLite's schema 25 left the last two to the run's lease):
nothing acknowledged is lost.
Before any worker runs again every read shows the step completed with the event; the next
worker resumes the run with the event's data, and the history holds one WAIT_MATCHED row."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent

ROOT = Path(__file__).resolve().parent.parent.parent
# a sender of its own, killed right after its send returned (its engine never closes)
SENDER = """
import os, signal, sys
from stepline import App, Event
app = App("payer", db=sys.argv[1])
app.send(Event("payment/received", {"orderId": "o1", "amount": 7}))
print("sent", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _shop(db: str) -> App:
    app = App("shop", db=db)

    @app.function(id="checkout", trigger=TriggerEvent("order/created"))
    async def checkout(ctx: Context) -> Any:
        paid = await ctx.step.wait_for_event(
            "payment",
            event="payment/received",
            if_="async.data.orderId == event.data.orderId",
            timeout="1d",
        )
        return None if paid is None else paid.data

    return app


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
async def test_a_resolution_acknowledged_before_its_sender_is_killed_resumes_the_run(
    app_db: str,
) -> None:
    shop = _shop(app_db)
    try:
        async with shop.worker(concurrency=2):
            [created] = await shop.send_async(Event("order/created", {"orderId": "o1"}))
            [run] = await shop.runs(event_id=created)

            async def waiting() -> bool:
                found = await shop.get_run(run.run_id)
                return found is not None and found.status == "WAITING"

            await until("the run waits for its payment", waiting)
    finally:
        shop.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SENDER, app_db, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(sender.communicate(), 60)
    assert sender.returncode == -signal.SIGKILL, err.decode()
    assert out == b"sent\n"
    shop = _shop(app_db)
    try:
        resumed = await shop.get_run(run.run_id)
        assert resumed is not None and resumed.status == "WAITING"  # no worker ran since
        [payment] = [s for s in resumed.steps if s.id == "payment"]
        assert (payment.status, payment.output["data"]) == (
            "COMPLETED",
            {"orderId": "o1", "amount": 7},
        )
        async with shop.worker(concurrency=2):
            done = await shop.wait_for_run(run.run_id)
        assert done.output == {"orderId": "o1", "amount": 7}
        kinds = [h.kind for h in await shop.history(run.run_id)]
        assert kinds.count("WAIT_MATCHED") == 1
    finally:
        shop.close()
