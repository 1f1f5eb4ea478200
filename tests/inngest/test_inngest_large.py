"""Large payloads and run limits of real SDK apps (JS 4.x, JS 3.x, Python) driven by the HTTP
driver: a request over 4 MiB carries no memo and no batch (``use_api``), and the SDK fetches
them from Stepline's ``GET /v0/runs/{id}/actions`` and ``/batch``; ten steps of 1 MiB and a
batch of ten large events complete with every step body run once. An SDK run breaching a limit
(steps, step output, run state) fails with ``LimitExceededError`` naming it, as a native run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import orjson
import pytest
from _stepline_dev import shared_dev

from conftest import KEY, SdkApp
from stepline import App, Event, Limits
from stepline._tls import tls_context
from stepline.drivers.inngest import InngestDriver, SdkApps, SigningKeys
from stepline.server import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings
from stepline.store import Store
from stepline.testing import MockClock, TestEngine

pytestmark = pytest.mark.timeout(600)

KINDS = ["js", "js3", "py"]


def _script(kind: str) -> str:
    return "py_parallel_app.py" if kind == "py" else "parallel_app.js"


class RecordingDriver(InngestDriver):
    """The HTTP driver, noting whether each request it sent said ``use_api``."""

    def __init__(self, *, checkpointing: bool = True) -> None:
        super().__init__(checkpointing=checkpointing)
        self.use_api: list[bool] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        self.use_api.append(bool(orjson.loads(body)["use_api"]))
        return await super().post(url, body, headers)


@pytest.mark.parametrize("kind", KINDS)
async def test_ten_steps_of_a_mebibyte_make_the_sdk_fetch_the_memo(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    # JS 4.x would run all ten steps in one request (async checkpointing): the plain path here
    driver = RecordingDriver(checkpointing=False)
    async with shared_dev(
        tmp_path, start_app, kind, app, sdk_store, _script(kind), driver=driver
    ) as d:
        run_id = await d.run_of("big-steps", Event("big/steps", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", {"steps": 10, "bytes": 10 << 20})
        state = await d.app_state(run_id)
        assert state["ran"] == [f"big-{i}" for i in range(10)]  # each step body once
        assert state["requests"] == 11
        # with 4 MiB of memo and more (from the 5th request on) a request carries none
        assert driver.use_api == [i >= 4 for i in range(11)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_batch_of_large_events_makes_the_sdk_fetch_the_batch(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    driver = RecordingDriver()
    blob = "b" * (450 * 1024)
    async with shared_dev(
        tmp_path, start_app, kind, app, sdk_store, _script(kind), driver=driver
    ) as d:
        ids = await d.t.send([Event("big/batch", {"blob": blob, "i": i}) for i in range(10)])
        runs = [r for r in await d.t.runs() if r.function_id == d.sdk.slug("big-batch")]
        assert len(runs) == 1
        run = await d.until_status(runs[0].run_id, "COMPLETED", "FAILED")
        assert set(run.event_ids) == set(ids)
        assert (run.status, run.output) == ("COMPLETED", {"events": 10, "bytes": 10 * len(blob)})
        assert driver.use_api == [True]


async def test_the_run_data_routes_check_the_bearer_token_and_the_run(tmp_path: Path) -> None:
    app = App("stepline-prod")
    keys = SigningKeys.parse(KEY)
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock):
        SdkApps(app, InngestDriver(signing_key=keys.current, verify_keys=keys))
        server = HttpServer(create_app(app, ServerSettings()), "127.0.0.1", 0)
        serving = asyncio.create_task(server.run())
        try:
            bearer = {"Authorization": f"Bearer {keys.current.hashed}"}
            async with httpx.AsyncClient(base_url=server.url, verify=tls_context()) as client:
                unsigned = await client.get("/v0/runs/01JX0000000000000000000000/actions")
                malformed = await client.get("/v0/runs/not-a-run/batch", headers=bearer)
                gone = await client.get("/v0/runs/01JX0000000000000000000000/batch", headers=bearer)
            assert (unsigned.status_code, malformed.status_code, gone.status_code) == (
                401,
                400,
                410,
            )
        finally:
            server.stop()
            await serving


@pytest.mark.parametrize(
    ("limits", "data", "breach"),
    [
        (Limits(max_steps=5), {"n": 10, "size": 10}, "beyond the limit of 5 steps"),
        (
            Limits(max_step_output_bytes=100_000),
            {"n": 2, "size": 200_000},
            "over the limit of 100000 bytes",
        ),
        (
            Limits(max_run_state_bytes=3 << 20),
            {"n": 10, "size": 1 << 20},
            f"over the limit of {3 << 20}",
        ),
    ],
)
@pytest.mark.parametrize("kind", ["js", "py"])
async def test_an_sdk_run_breaching_a_limit_fails_naming_it(
    kind: str,
    limits: Limits,
    data: dict[str, int],
    breach: str,
    tmp_path: Path,
    start_app: Callable[..., SdkApp],
    sdk_store: str | Store,
) -> None:
    app = App("stepline-dev", limits=limits)
    async with shared_dev(tmp_path, start_app, kind, app, sdk_store, _script(kind)) as d:
        run_id = await d.run_of("big-steps", Event("big/steps", data))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert run.status == "FAILED"
        assert run.error is not None and run.error["name"] == "LimitExceededError"
        assert breach in run.error["message"]
