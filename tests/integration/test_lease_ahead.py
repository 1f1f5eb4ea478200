"""Timers are leased shortly before they are due (issue 6, timer lateness at scale): the lease
transaction and the run's load happen ahead, and the pass executes at the due time — never
before it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import LEASE_AHEAD
from stepline.store import MemoryStore
from stepline.testing import MockClock


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
async def test_a_timer_leased_ahead_never_resumes_before_its_due_time(app_db: str) -> None:
    app = App("timers", db=app_db)
    resumed: dict[int, float] = {}

    @app.function(id="nap", trigger=TriggerEvent("nap/go"))
    async def nap(ctx: Context) -> Any:
        await ctx.step.sleep_until("nap", ctx.event.data["until"])
        resumed.setdefault(ctx.event.data["i"], time.time())
        return None

    try:
        async with app.worker() as worker:
            assert worker.lease_ahead == LEASE_AHEAD > 0  # a real clock: timers leased ahead
            start = time.time()
            dues = {i: start + 0.2 + 0.01 * i for i in range(20)}
            await app.send_async(
                [Event(name="nap/go", data={"i": i, "until": due}) for i, due in dues.items()]
            )
            await until("every timer resumed", lambda: len(resumed) == len(dues))
        early = {i: dues[i] - at for i, at in resumed.items() if at < dues[i]}
        assert early == {}
    finally:
        app.close()


def test_a_virtual_clock_leases_nothing_ahead() -> None:
    # a MockClock jumps to the due instant itself; a pass waiting for it would hold it back
    app = App("timers")
    app.attach(MemoryStore(), MockClock())
    assert app.make_worker().lease_ahead == 0.0
