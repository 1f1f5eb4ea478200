"""Async checkpointing (JS SDK 4.x): a discovery request carries ``ctx.fn_id`` and ``ctx.qi_id``,
so the SDK runs step after step in that one request, reports each to ``POST
/v1/checkpoint/{run_id}/async`` (committed by the pass in flight) and ends with a 206
``RunComplete``; SDKs without it (JS 3.x, Python) keep the plain path, one request per step.
A checkpoint for no request in flight here is refused (409 for a stale lease, 503 elsewhere);
an SDK whose checkpoints are refused falls back to plain replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _stepline_dev import stepline_dev

from conftest import SdkApp
from stepline import App, Event
from stepline._tls import tls_context
from stepline.drivers.inngest import InngestDriver, SdkApps
from stepline.server import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings
from stepline.store import Store
from stepline.testing import MockClock, TestEngine

pytestmark = pytest.mark.timeout(600)


class CountingDriver(InngestDriver):
    """The HTTP driver, counting the checkpoints it answered 200."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpointed = 0

    async def checkpoint(self, run_id: str, body: bytes) -> int:
        status = await super().checkpoint(run_id, body)
        self.checkpointed += status == 200
        return status


def _script(kind: str) -> str:
    return "py_parallel_app.py" if kind == "py" else "parallel_app.js"


@pytest.mark.parametrize(
    ("kind", "requests", "checkpoints"), [("js", 1, 5), ("js3", 6, 0), ("py", 6, 0)]
)
async def test_a_js_4x_app_runs_every_step_in_one_request(
    kind: str,
    requests: int,
    checkpoints: int,
    tmp_path: Path,
    start_app: Callable[..., SdkApp],
    sdk_store: str | Store,
) -> None:
    app = App("stepline-dev")
    driver = CountingDriver()
    async with stepline_dev(
        tmp_path, start_app, kind, app, script=_script(kind), driver=driver, store=sdk_store
    ) as d:
        run_id = await d.run_of("sequence", Event("seq/run", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", [10, 20, 30, 40, 50])
        assert [(s.id, s.status, s.output) for s in run.steps] == [
            (f"s{i}", "COMPLETED", i * 10) for i in range(1, 6)
        ]
        state = await d.app_state(run_id)
        assert state["ran"] == [f"s{i}" for i in range(1, 6)]  # each step body once
        assert (state["requests"], driver.checkpointed) == (requests, checkpoints)


async def test_a_sleep_ends_a_checkpointed_request_and_the_next_one_goes_on(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-dev")
    driver = CountingDriver()
    async with stepline_dev(
        tmp_path, start_app, "js", app, script="parallel_app.js", driver=driver
    ) as d:
        run_id = await d.run_of("sequence", Event("seq/run", {"nap": True}))
        await d.until_status(run_id, "SLEEPING")
        assert (await d.app_state(run_id))["ran"] == ["s1", "s2"]
        d.clock.advance(60)
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", [10, 20, 30, 40, 50])
        state = await d.app_state(run_id)
        assert state["ran"] == [f"s{i}" for i in range(1, 6)]
        assert (state["requests"], driver.checkpointed) == (2, 5)


class ElsewhereDriver(InngestDriver):
    """Drives runs here, while its checkpoints reach another process's server (a ``stepline
    server`` whose workers run elsewhere): no pass in flight there, each one answered 503."""

    def __init__(self) -> None:
        super().__init__()
        self.elsewhere = InngestDriver()
        self.refused = 0

    async def checkpoint(self, run_id: str, body: bytes) -> int:
        status = await self.elsewhere.checkpoint(run_id, body)
        self.refused += status == 503
        return status


async def test_a_js_4x_app_whose_checkpoints_are_refused_falls_back_to_plain_replies(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-dev")
    driver = ElsewhereDriver()
    async with stepline_dev(
        tmp_path, start_app, "js", app, script="parallel_app.js", driver=driver
    ) as d:
        run_id = await d.run_of("sequence", Event("seq/run", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED", timeout=120)
        assert (run.status, run.output) == ("COMPLETED", [10, 20, 30, 40, 50])
        assert [(s.id, s.status, s.output) for s in run.steps] == [
            (f"s{i}", "COMPLETED", i * 10) for i in range(1, 6)
        ]
        state = await d.app_state(run_id)
        assert state["ran"] == [f"s{i}" for i in range(1, 6)]  # each step body once
        # each step: its checkpoint tried 5 times (the SDK's retries), then reported in the
        # request's 206 as a plain reply; one request a step and the last one (RunComplete)
        assert (state["requests"], driver.refused) == (6, 25)


async def test_a_checkpoint_without_a_request_in_flight_is_refused(tmp_path: Path) -> None:
    app = App("stepline-dev")
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock):
        SdkApps(app)
        server = HttpServer(create_app(app, ServerSettings(dev=True)), "127.0.0.1", 0)
        serving = asyncio.create_task(server.run())
        try:
            async with httpx.AsyncClient(base_url=server.url, verify=tls_context()) as client:
                elsewhere = await client.post(
                    "/v1/checkpoint/01JX0000000000000000000000/async",
                    json={"run_id": "01JX0000000000000000000000", "qi_id": "x", "steps": []},
                )
                malformed = await client.post(
                    "/v1/checkpoint/01JX0000000000000000000000/async", content=b"[]"
                )
            assert (elsewhere.status_code, malformed.status_code) == (503, 400)
        finally:
            server.stop()
            await serving
