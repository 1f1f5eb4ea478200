"""The driver seam: a function names its driver; the worker hands each pass of its runs to that
driver, which records what the code did through ``commit_pass``, as the in-process Python
driver does (every other test drives functions through that one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, ConfigError, Event, TriggerEvent
from stepline.engine.driver import commit_pass
from stepline.engine.engine import Engine
from stepline.sdk.function import FunctionDef, build_function
from stepline.serde import dumps
from stepline.store.records import HistoryRecord, Lease, PassCommit, RunEnd, RunState, StepRecord
from stepline.testing import TestEngine


class EchoDriver:
    """Drives a run without Python code of its own: one step, then the run ends."""

    def __init__(self) -> None:
        self.passes: list[str] = []

    async def run_pass(
        self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef
    ) -> None:
        self.passes.append(state.run.run_id)
        now = engine.clock.now()
        data = state.events[0].data
        commit = PassCommit(state.run.run_id, lease.token)
        commit.steps.append(
            StepRecord(
                state.run.run_id,
                "h-remote",
                "remote",
                "run",
                0,
                "COMPLETED",
                output_json=dumps(data),
                attempts=1,
                started_at=now,
                ended_at=now,
            )
        )
        commit.history.append(HistoryRecord(state.run.run_id, now, "RUN_COMPLETED"))
        commit.end = RunEnd(status="COMPLETED", output_json=dumps({"echo": data}))
        await commit_pass(engine, commit, now)


def _remote(fn_id: str, driver: str) -> FunctionDef:
    async def never_called(ctx: Any) -> None:
        raise AssertionError("the python driver must not run a function of another driver")

    return build_function(
        id=fn_id,
        handler=never_called,
        trigger=TriggerEvent("echo"),
        triggers=None,
        retries=0,
        driver=driver,
    )


async def test_a_pass_is_handed_to_the_functions_driver(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="native", trigger=TriggerEvent("echo"))
    async def native(ctx: Any) -> str:
        return "native"

    driver = EchoDriver()
    async with make_engine() as t:
        t.app.engine.add_driver("echo", driver)
        t.app.engine.register(_remote("remote", "echo"))
        await t.send(Event("echo", {"n": 1}))
        runs = {r.function_id: r for r in await t.runs()}
        remote = await t.wait_for_run(runs["remote"].run_id)
        local = await t.wait_for_run(runs["native"].run_id)
    assert (remote.status, remote.output) == ("COMPLETED", {"echo": {"n": 1}})
    assert [(s.id, s.output) for s in remote.steps] == [("remote", {"n": 1})]
    assert driver.passes == [remote.run_id]
    assert local.output == "native"


async def test_a_function_of_an_unknown_driver_is_refused(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    async with make_engine() as t:
        with pytest.raises(ConfigError, match="driver 'inngest'"):
            t.app.engine.register(_remote("remote", "inngest"))
        with pytest.raises(ConfigError, match="already"):
            t.app.engine.add_driver("python", EchoDriver())
