"""The eager start timeout (as Inngest's ``createEagerCancellationForTimeout``) for a function of
an Inngest-SDK app served by Stepline: a run of the official Python SDK's function held back by
its full concurrency key is cancelled at creation + ``timeouts.start``, announced with
``inngest/function.cancelled``, while the run holding the slot goes on (``py_scenario_app.py``,
``sc-one-at-a-time``; the native twin is ``tests/integration/test_cancellation.py``).

issue 10: the start timeout's housekeeping path is the same for SDK functions; this shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _stepline_dev import stepline_dev

from conftest import SdkApp
from stepline import App, Event
from stepline._tls import tls_context

pytestmark = pytest.mark.timeout(300)


async def test_a_held_back_sdk_run_is_cancelled_at_its_start_deadline(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    async with stepline_dev(
        tmp_path, start_app, "py", App("stepline-dev"), script="py_scenario_app.py"
    ) as d:
        base = d.sdk.serve_url.removesuffix("/api/inngest")
        slug = d.sdk.slug("sc-one-at-a-time")
        first = await d.run_of("sc-one-at-a-time", Event("sc/hold", {}))
        await d.until_status(first, "RUNNING")  # its step holds the one slot
        second = await d.run_of("sc-one-at-a-time", Event("sc/hold", {}))
        d.clock.advance(61)
        await d.t.tick()
        try:
            cancelled = await d.until_status(second, "CANCELLED", "COMPLETED", "FAILED")
            assert cancelled.status == "CANCELLED"
            assert cancelled.error is not None and "timeouts.start" in cancelled.error["message"]
            still = await d.t.app.get_run(first)
            assert still is not None and still.status == "RUNNING"
        finally:
            async with httpx.AsyncClient(verify=tls_context()) as client:
                await client.post(f"{base}/release/hold")
        done = await d.until_status(first, "COMPLETED", "FAILED")
        assert (done.status, done.output) == ("COMPLETED", "held")
        announced = await d.t.app.events(name="inngest/function.cancelled")
        assert [(e.event.data["function_id"], e.event.data["run_id"]) for e in announced] == [
            (slug, second)
        ]
        async with httpx.AsyncClient(verify=tls_context()) as client:
            held = (await client.get(f"{base}/calls/hold")).json()
        assert held == [first]  # the cancelled run's step never ran
