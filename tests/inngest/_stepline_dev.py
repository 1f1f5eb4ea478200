"""A Stepline app served over HTTP (its event API, ``/fn/register`` and the SDK's run-data
routes) with one real SDK app synced into it, on a MockClock that moves only when told to."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from conftest import SdkApp
from stepline import App, Event
from stepline._tls import tls_context
from stepline.drivers.inngest import InngestDriver, SdkApps
from stepline.engine.engine import Engine
from stepline.errors import ConfigError
from stepline.sdk.function import FunctionDef
from stepline.sdk.run import Run
from stepline.server import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings
from stepline.store import Store
from stepline.store.records import Lease, RunState
from stepline.testing import MockClock, TestEngine

API_TOKEN = "test-api-token"


def tiny_registration(**fields: Any) -> dict[str, Any]:
    """An app's registration body (``POST /fn/register``): app ``tiny`` with one function
    ``tiny-a`` (event ``tiny/a``) at a URL nothing answers; ``fields`` added to the body."""
    url = "http://127.0.0.1:9/api/inngest"
    step = {
        "id": "step",
        "name": "a",
        "runtime": {"type": "http", "url": f"{url}?fnId=tiny-a&stepId=step"},
    }
    function = {"id": "tiny-a", "name": "a", "triggers": [{"event": "tiny/a"}]}
    function["steps"] = {"step": step}
    return {"appName": "tiny", "url": url, **fields, "functions": [function]}


class ScriptedSdk(InngestDriver):
    """The HTTP driver with an SDK's replies scripted (``reply``, per step id asked for) instead
    of an SDK app over HTTP; ``posted``: the step ids asked for, in order."""

    def __init__(self) -> None:
        super().__init__(checkpointing=False)
        self.posted: list[str] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        step = parse_qs(urlsplit(url).query)["stepId"][0]
        self.posted.append(step)
        return await self.reply(step, body)

    @abstractmethod
    async def reply(self, step: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The SDK's reply (status, headers, body) to a request for ``step`` with ``body``."""


class PassCounter(InngestDriver):
    """The HTTP driver, counting the passes it ended (``passes``) and running (``running``)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.passes = 0
        self.running = 0

    async def run_pass(
        self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> None:
        self.running += 1
        try:
            await super().run_pass(engine, lease, state, fn)
        finally:
            self.running -= 1
            self.passes += 1


@dataclass
class Dev:
    t: TestEngine
    clock: MockClock
    apps: SdkApps
    sdk: SdkApp
    url: str

    async def run_of(self, fn: str, event: Event) -> str:
        [event_id] = await self.t.send(event)
        [run] = [
            r
            for r in await self.t.runs()
            if event_id in r.event_ids and r.function_id == self.sdk.slug(fn)
        ]
        return run.run_id

    async def until_status(self, run_id: str, *statuses: str, timeout: float = 60.0) -> Run:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            run = await self.t.app.get_run(run_id)
            assert run is not None
            if run.status in statuses:
                return run
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"run {run_id} is {run.status}, never {statuses}")
            await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it

    async def app_state(self, run_id: str) -> dict[str, Any]:
        """What the SDK app counted for ``run_id``: ``requests`` and the step bodies ``ran``."""
        base = self.sdk.serve_url.removesuffix("/api/inngest")
        async with httpx.AsyncClient(verify=tls_context()) as client:
            response = await client.get(f"{base}/state/{run_id}")
        state: dict[str, Any] = response.json()
        return state

    async def until(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll until ``check()`` holds (``what`` names it in the failure)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"never {what}")
            await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it

    async def until_requests(self, run_id: str, count: int, timeout: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await self.app_state(run_id))["requests"] < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"run {run_id}: fewer than {count} requests")
            await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it


# the port of the last server stepline_dev(..., same_sdk_app=True) served for a module's
# ``start_app`` (by its id: a later module's may get the same id, and then the port, unharmed)
_ports: dict[int, int] = {}


def _http_server(asgi: Any, start_app: Callable[..., SdkApp] | None) -> HttpServer:
    """A server on any free port, or (``start_app`` given) on the port the module's last one
    served, so the SDK app started for that URL (``base_url``) is the module's same one."""
    if start_app is not None and id(start_app) in _ports:
        try:
            return HttpServer(asgi, "127.0.0.1", _ports[id(start_app)])
        except ConfigError:  # taken meanwhile by another process: a new URL, a new SDK app
            pass
    server = HttpServer(asgi, "127.0.0.1", 0)
    if start_app is not None:
        _ports[id(start_app)] = server.port
    return server


@asynccontextmanager
async def stepline_dev(
    tmp_path: Path,
    start_app: Callable[..., SdkApp],
    kind: str,
    app: App,
    *,
    script: str | None = None,
    driver: InngestDriver | None = None,
    clock: MockClock | None = None,
    same_sdk_app: bool = False,
    store: str | Store = "sqlite",
) -> AsyncIterator[Dev]:
    """A Stepline app served over HTTP with the SDK app of ``kind`` (``script``) synced into it.
    ``same_sdk_app``: the server listens where the module's previous one did, so every test of
    the module that asks for it syncs the same SDK app process (started once: ~0.5 s of CPU
    each), for tests whose app keeps what it counts per run id (``/state/<run id>``); the app
    is synced into each test's own server and database all the same. Such a test ends once
    the app handles no request (``GET /busy``), after its server stopped: whatever the app still
    did for this test (an event a step sends, a checkpoint) met no server on that port, and never
    reaches the next test's. ``store``: the run state's (``TestEngine``'s), SQLite by default."""
    clock = clock or MockClock(autojump=False)
    sdk: SdkApp | None = None
    async with TestEngine(app, store=store, path=tmp_path / "stepline.db", clock=clock) as t:
        apps = SdkApps(app, driver)
        settings = ServerSettings(dev=True, event_keys=("test-event-key",), api_tokens=(API_TOKEN,))
        server = _http_server(create_app(app, settings), start_app if same_sdk_app else None)
        serving = asyncio.create_task(server.run())
        try:
            sdk = start_app(kind, "dev", base_url=server.url, script=script)
            assert await apps.sync(sdk.serve_url) == 200
            yield Dev(t, clock, apps, sdk, server.url)
        finally:
            server.stop()
            await serving
    if same_sdk_app and sdk is not None:
        await until_idle(sdk)


def shared_dev(
    tmp_path: Path,
    start_app: Callable[..., SdkApp],
    kind: str,
    app: App,
    store: str | Store,
    script: str,
    driver: InngestDriver | None = None,
) -> AbstractAsyncContextManager[Dev]:
    """``stepline_dev`` with the module's one SDK app of ``kind`` running ``script``
    (``same_sdk_app``), the test's runs on ``store``."""
    return stepline_dev(
        tmp_path, start_app, kind, app, script=script, driver=driver, same_sdk_app=True, store=store
    )


async def busy(sdk: SdkApp) -> int:
    """How many requests to its Inngest endpoint ``sdk`` is handling (``GET /busy``)."""
    base = sdk.serve_url.removesuffix("/api/inngest")
    async with httpx.AsyncClient(verify=tls_context()) as client:
        response = await client.get(f"{base}/busy")
    response.raise_for_status()
    return int(response.json()["busy"])


async def until_idle(sdk: SdkApp, timeout: float = 120.0) -> None:
    """Wait until ``sdk`` handles no request (a step body may wait up to 60 s: the apps' race
    groups)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := await busy(sdk)) > 0:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the {sdk.kind} SDK app still handles {left} requests")
        await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it
