"""Parallel steps and step retries of real SDK apps (JS 4.x, JS 3.x, Python async on FastAPI and
sync on Flask) driven by the HTTP driver as Inngest's server drives them: targeted requests for
every planned step at once, one discovery once they are all done (wait mode) or one after each
(race mode), the exact number of requests Inngest's executor makes; a step in its retry backoff
is not asked for again before the backoff ends, even when something else wakes the run. SDK
apps set up before the Stepline app is attached to its engine keep their driver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from _stepline_dev import Dev, PassCounter, shared_dev

from conftest import SdkApp
from stepline import App, Event
from stepline.drivers.inngest import SdkApps
from stepline.sdk.run import Run
from stepline.server import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings
from stepline.store import Store
from stepline.testing import MockClock, TestEngine

pytestmark = pytest.mark.timeout(600)

KINDS = ["js", "js3", "py", "pyflask"]
RACING = ["js", "py", "pyflask"]  # JS 3.x has no race mode
SCRIPTS = {"py": "py_parallel_app.py", "pyflask": "py_flask_parallel_app.py"}


def _script(kind: str) -> str:
    return SCRIPTS.get(kind, "parallel_app.js")


async def _woken_during_backoff(
    d: Dev, driver: PassCounter, fn: str, trigger: Event, release: Event
) -> tuple[str, Run]:
    """Start ``fn``: its first pass (a discovery, then a step of its group targeted) ends with
    the step failed and backing off; then ``release`` (the event of the group's wait) wakes
    the run. The run once that woken pass ended."""
    run_id = await d.run_of(fn, trigger)
    await d.until(lambda: driver.passes == 1, "the first pass ended")
    assert await d.app_state(run_id) == {"requests": 2, "ran": ["flaky"]}
    await d.t.send(release)
    await d.until(lambda: driver.passes == 2, "the woken pass ended")
    return run_id, await d.until_status(run_id, "RETRYING")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_run_woken_during_a_steps_retry_backoff_waits_for_it(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    driver = PassCounter()
    async with shared_dev(
        tmp_path, start_app, kind, app, sdk_store, _script(kind), driver=driver
    ) as d:
        run_id, run = await _woken_during_backoff(
            d, driver, "retry-parallel", Event("par/retry", {}), Event("par/release", {})
        )
        steps = {s.id: s for s in run.steps}
        assert steps["release"].status == "COMPLETED"
        assert steps["flaky"].status == "RETRYING"
        # as Go's executor: no request while the group's step backs off (none ran it early)
        assert await d.app_state(run_id) == {"requests": 2, "ran": ["flaky"]}
        d.clock.advance(3600)
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", {"flaky": "ok", "released": True})
        state = await d.app_state(run_id)
        assert state["ran"] == ["flaky", "flaky"]
        assert state["requests"] == 4  # + the step targeted again, the final discovery


@pytest.mark.parametrize("kind", RACING)
async def test_a_race_mode_group_races_on_in_a_later_pass(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    async with shared_dev(tmp_path, start_app, kind, app, sdk_store, _script(kind)) as d:
        run_id = await d.run_of("race-retry", Event("par/race-retry", {}))
        # discovery (flaky planned, the wait), flaky targeted: it fails, the pass ends
        run = await d.until_status(run_id, "RETRYING")
        assert await d.app_state(run_id) == {"requests": 2, "ran": ["flaky"]}
        d.clock.advance(60)  # the retry time: a new pass, the wait still pending
        # flaky again; its group races: a discovery plans "after" at once, "after"
        # targeted, one more discovery (race mode: after each step)
        await d.until_requests(run_id, 5)
        run = await d.until_status(run_id, "WAITING")
        assert {s.id: s.status for s in run.steps} == {
            "flaky": "COMPLETED",
            "release": "PENDING",
            "after": "COMPLETED",
        }
        assert await d.app_state(run_id) == {"requests": 6, "ran": ["flaky", "flaky", "after"]}
        await d.t.send(Event("par/race-release", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == (
            "COMPLETED",
            {"chain": ["ok", "after"], "released": True},
        )
        assert (await d.app_state(run_id))["requests"] == 7  # the wake's discovery


@pytest.mark.parametrize("kind", RACING)
async def test_a_race_mode_group_woken_during_a_backoff_plans_its_steps_at_once(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    driver = PassCounter()
    async with shared_dev(
        tmp_path, start_app, kind, app, sdk_store, _script(kind), driver=driver
    ) as d:
        run_id, run = await _woken_during_backoff(
            d, driver, "race-retry", Event("par/race-retry", {}), Event("par/race-release", {})
        )
        # race mode (read back from the history): one discovery, planning steps only, so
        # flaky is not run before its retry time
        assert await d.app_state(run_id) == {"requests": 3, "ran": ["flaky"]}
        d.clock.advance(60)
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == (
            "COMPLETED",
            {"chain": ["ok", "after"], "released": True},
        )
        # flaky targeted, a discovery, "after" targeted, the last discovery
        assert await d.app_state(run_id) == {
            "requests": 7,
            "ran": ["flaky", "flaky", "after"],
        }


@pytest.mark.parametrize("kind", KINDS)
async def test_parallel_steps_in_wait_mode_make_inngests_requests(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    async with shared_dev(tmp_path, start_app, kind, app, sdk_store, _script(kind)) as d:
        run_id = await d.run_of("parallel-wait", Event("par/wait", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", [["a.1", "a.2"], ["b.1", "b.2"]])
        state = await d.app_state(run_id)
        # discovery; a.1 and b.1 targeted; one discovery; a.2 and b.2; one discovery
        assert state["requests"] == 7
        assert sorted(state["ran"][:2]) == ["a.1", "b.1"]
        assert sorted(state["ran"][2:]) == ["a.2", "b.2"]


@pytest.mark.parametrize("kind", RACING)
async def test_parallel_steps_in_race_mode_make_inngests_requests(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    async with shared_dev(tmp_path, start_app, kind, app, sdk_store, _script(kind)) as d:
        run_id = await d.run_of("parallel-race", Event("par/race", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert run.status == "COMPLETED", run.error
        state = await d.app_state(run_id)
        # b.1 ends only once a.2 ran: a.1's discovery went ahead while b.1 was still running
        assert state["ran"] == ["a.1", "a.2", "b.1", "b.2"]
        # the first discovery, 4 targeted steps, a discovery after each of them
        assert state["requests"] == 9


@pytest.mark.parametrize("kind", KINDS)
async def test_an_invoke_runs_and_a_sent_event_in_one_group(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    app = App("stepline-dev")
    async with shared_dev(tmp_path, start_app, kind, app, sdk_store, _script(kind)) as d:
        run_id = await d.run_of("parallel-mixed", Event("par/mixed", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == (
            "COMPLETED",
            {"called": 42, "runs": ["1a", "1b"], "after": "after"},
        )
        state = await d.app_state(run_id)
        assert sorted(state["ran"]) == ["1a", "1b", "after"]
        # discovery; 1a, 1b and the send targeted (the invoke pending); a discovery once the
        # child ended, running "after"; the last discovery (JS 4.x: "after" checkpointed and
        # the run's end reported in that same discovery)
        assert state["requests"] == (5 if kind == "js" else 6)


async def test_sdk_apps_set_up_before_attach_keep_their_driver(
    tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    app = App("stepline-dev", db=str(tmp_path / "before.db"))
    apps = SdkApps(app)  # before the app runs on its test engine
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock) as t:
        assert app.engine.drivers["inngest"] is apps.driver
        settings = ServerSettings(dev=True, event_keys=("test-event-key",))
        server = HttpServer(create_app(app, settings), "127.0.0.1", 0)
        serving = asyncio.create_task(server.run())
        try:
            sdk = start_app("py", "dev", base_url=server.url, script="py_parallel_app.py")
            assert await apps.sync(sdk.serve_url) == 200
            [event_id] = await t.send(Event("par/double", {"n": 21}))
            [run] = [r for r in await t.runs() if event_id in r.event_ids]
            done = await t.wait_for_run(run.run_id, timeout=60)
            assert (done.status, done.output) == ("COMPLETED", 42)
        finally:
            server.stop()
            await serving
