"""The HTTP driver end to end: a real SDK app (JS 4.x, JS 3.x, Python) served locally, synced
into a Stepline app served over HTTP (its ``PUT`` answered by the app's own ``POST
/fn/register``), its functions triggered by events and driven over HTTP: step.run, sleep (on
the MockClock), waitForEvent resolved by an event, parallel steps, invoke, sendEvent reaching a
native Stepline function through the event API (``POST /e/{key}``); a failing step retried,
then failed for good."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _stepline_dev import API_TOKEN, tiny_registration
from _stepline_dev import stepline_dev as dev
from click.testing import CliRunner

from conftest import FALLBACK_KEY, KEY, SdkApp
from stepline import App, ConfigError, Context, Event, TriggerEvent
from stepline._tls import tls_context
from stepline.cli import cli
from stepline.drivers.inngest import InngestDriver, SdkApps, SigningKeys, SyncRefused
from stepline.server import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings
from stepline.store.memory import MemoryStore
from stepline.testing import MockClock, TestEngine

# the first test of a module may install the JS SDKs (npm ci, ~40 s) and start the apps
pytestmark = pytest.mark.timeout(600)

KINDS = ["js", "js3", "py", "pyflask"]


def _native(app: App) -> None:
    @app.function(id="on-done", trigger=TriggerEvent("test/done"))
    async def on_done(ctx: Context) -> Any:
        return {"got": ctx.event.data}


@pytest.mark.parametrize("kind", KINDS)
async def test_an_sdk_function_runs_end_to_end(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-dev")
    _native(app)
    async with dev(tmp_path, start_app, kind, app) as d:
        synced = d.apps.apps[f"{kind}-app"]
        assert {f.definition.id for f in synced.functions} >= {d.sdk.slug("steps")}
        assert d.sdk.slug("steps") in {f.id for f in app.functions}
        async with httpx.AsyncClient(base_url=d.url, verify=tls_context()) as client:
            listed = await client.get(
                f"/api/v1/functions/{d.sdk.slug('steps')}",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            )
        assert listed.status_code == 200, listed.text
        assert listed.json()["sdk_app"] == {
            "name": f"{kind}-app",
            "url": d.sdk.function_url("steps"),
        }
        run_id = await d.run_of("steps", Event("test/steps", {"n": 1}))
        await d.until_status(run_id, "SLEEPING")
        d.clock.advance(60)  # past the 2 s sleep, whichever clock the SDK measured it on
        await d.until_status(run_id, "WAITING")
        await d.t.send(Event("test/go", {"n": 2}))  # its `if` does not match
        await d.t.send(Event("test/go", {"n": 1, "why": "go"}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert run.status == "COMPLETED", run.error
        assert run.output == {
            "a": {"n": 2},
            "waited": {"n": 1, "why": "go"},
            "p1": 20,
            "p2": 200,
            "called": {"doubled": 40},
        }
        steps = {s.id: s for s in run.steps}
        assert {"a", "p1", "p2"} <= set(steps)
        assert steps["a"].output == {"n": 2}
        assert all(s.status == "COMPLETED" for s in run.steps)
        # step.sendEvent went through the event API to a native Stepline function
        done = [r for r in await d.t.runs() if r.function_id == "on-done"]
        assert len(done) == 1
        finished = await d.t.wait_for_run(done[0].run_id)
        assert finished.output == {"got": {"p2": 200}}
        # the invoked child is a run of the SDK app's child function
        children = [r for r in await d.t.runs() if r.function_id == d.sdk.slug("child")]
        assert [c.status for c in children] == ["COMPLETED"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_step_is_retried_then_fails(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-dev")
    async with dev(tmp_path, start_app, kind, app) as d:
        run_id = await d.run_of("failing", Event("test/fail", {"how": "step"}))
        run = await d.until_status(run_id, "RETRYING")
        while not run.done:  # retries: 2, each after the engine's backoff (virtual time)
            if run.status == "RETRYING":
                d.clock.advance(3600)
            run = await d.until_status(run_id, "RETRYING", "FAILED", "COMPLETED")
            await asyncio.sleep(0.01)  # real time: the poll interval
        assert run.status == "FAILED"
        [boom] = [s for s in run.steps if s.id == "boom"]
        assert boom.status == "FAILED"
        assert boom.attempts == 3
        assert boom.error is not None and "step went wrong" in boom.error["message"]


async def test_a_resync_replaces_the_function_set_and_a_clash_is_refused(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-dev")

    @app.function(id="py-app-flow", trigger=TriggerEvent("native/flow"))
    async def clash(ctx: Context) -> None:
        return None

    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock):
        apps = SdkApps(app)
        body = tiny_registration()
        await apps.register(body)
        assert "tiny-a" in {f.id for f in app.functions}
        renamed = orjson.loads(orjson.dumps(body).replace(b"tiny-a", b"tiny-b"))
        await apps.register(renamed)
        ids = {f.id for f in app.functions}
        assert "tiny-b" in ids and "tiny-a" not in ids
        assert "tiny-a" not in app.engine.functions
        clashing = orjson.loads(orjson.dumps(body).replace(b"tiny-a", b"py-app-flow"))
        with pytest.raises(ConfigError, match="already registered"):
            await apps.register(clashing)
        bad = orjson.loads(orjson.dumps(body))
        bad["functions"][0]["triggers"] = [{"event": "tiny/*"}]
        with pytest.raises(SyncRefused):
            await apps.register(bad)
        assert "tiny-b" in {f.id for f in app.functions}


async def test_stepline_apps_sync_asks_the_app_to_register_again(
    tmp_path: Path, start_app: Callable[..., SdkApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("stepline-dev")
    async with dev(tmp_path, start_app, "py", app) as d:
        registered: list[str] = []
        register = d.apps.register

        async def counted(body: Any) -> Any:
            synced = await register(body)
            registered.append(synced.name)
            return synced

        monkeypatch.setattr(d.apps, "register", counted)
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["apps", "sync", d.sdk.serve_url])
        assert result.exit_code == 0, result.output
        assert registered == ["py-app"]
        assert d.sdk.slug("steps") in {f.id for f in app.functions}
        unreachable = await asyncio.to_thread(
            CliRunner().invoke, cli, ["apps", "sync", "http://127.0.0.1:9/api/inngest"]
        )
        assert unreachable.exit_code == 1
        assert "could not reach" in unreachable.output


@pytest.mark.parametrize("store", ["sqlite", "memory"])
async def test_a_synced_app_is_kept_across_a_restart(store: str, tmp_path: Path) -> None:
    body = tiny_registration()
    memory = MemoryStore() if store == "memory" else None
    spec: Any = memory if memory is not None else "sqlite"
    path = tmp_path / "stepline.db"
    first = App("stepline-dev")
    async with TestEngine(first, store=spec, path=path, clock=MockClock(autojump=False)):
        await SdkApps(first).register(body)
    again = App("stepline-dev")
    async with TestEngine(again, store=spec, path=path, clock=MockClock(autojump=False)):
        apps = SdkApps(again)
        assert list(apps.apps) == ["tiny"]
        assert "tiny-a" in again.engine.functions
        assert apps.driver.urls["tiny-a"].endswith("fnId=tiny-a&stepId=step")


async def test_production_mode_signs_requests_and_checks_the_apps_signatures(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-prod")
    keys = SigningKeys.parse(KEY, FALLBACK_KEY)
    driver = InngestDriver(signing_key=keys.current, verify_keys=keys)
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock) as t:
        apps = SdkApps(app, driver, server_kind="cloud")
        settings = ServerSettings(event_keys=("test-event-key",), api_tokens=(API_TOKEN,))
        server = HttpServer(create_app(app, settings), "127.0.0.1", 0)
        serving = asyncio.create_task(server.run())
        try:
            sdk = start_app("py", "cloud", base_url=server.url)
            async with httpx.AsyncClient(base_url=server.url, verify=tls_context()) as client:
                unsigned = await client.post("/fn/register", content=b"{}")
            assert unsigned.status_code == 401
            assert await apps.sync(sdk.serve_url) == 200
            assert "py-app" in apps.apps
            [event_id] = await t.send(Event("test/child", {"n": 21}))
            [run] = [r for r in await t.runs() if event_id in r.event_ids]
            done = await t.wait_for_run(run.run_id, timeout=60)
            assert (done.status, done.output) == ("COMPLETED", {"doubled": 42})
        finally:
            server.stop()
            await serving


async def test_the_cron_of_an_app_synced_after_the_worker_started_fires(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    # the worker wrote the schedules it knew when it started (none of the SDK app's): the sync
    # writes the app's own
    async with dev(tmp_path, start_app, "py", App("stepline-dev")) as d:
        assert await d.t.runs(function_id=d.sdk.slug("flow")) == []
        d.clock.advance(8 * 86400)  # past a Friday noon in Paris
        await d.t.tick()
        d.clock.advance(6)  # "flow" debounces its events by 5 s
        await d.t.tick()
        [run] = await d.t.runs(function_id=d.sdk.slug("flow"))
        event = await d.t.app.get_event(run.event_ids[0])
        assert event is not None and event.name == "inngest/scheduled.timer"
        assert event.data == {"cron": "TZ=Europe/Paris 0 12 * * 5"}
        done = await d.until_status(run.run_id, "COMPLETED", "FAILED")
        assert (done.status, done.output) == ("COMPLETED", "ok")


async def test_a_synced_app_is_listed_only_once_its_triggers_are_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/dev`` and the dashboard list ``SdkApps.apps``: an app shown there must already be in
    the trigger catalog, or an event another process sends on seeing it synced reaches nothing
    (tests/inngest/test_cross_app_sdk.py was red with ``handed_to == []``)."""
    app = App("stepline-dev")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db"):
        writer = app.engine.writer
        write, held, release = writer.write, asyncio.Event(), asyncio.Event()

        async def held_write(job: Callable[..., Any], **options: Any) -> Any:
            held.set()
            await release.wait()
            return await write(job, **options)

        monkeypatch.setattr(writer, "write", held_write)
        apps = SdkApps(app)
        sync = asyncio.create_task(apps.register(tiny_registration()))
        await held.wait()  # the registration's write is not committed yet
        try:
            listed_before_commit = dict(apps.apps)
        finally:
            release.set()
        synced = await sync
        assert listed_before_commit == {}
        assert apps.apps == {synced.name: synced}
