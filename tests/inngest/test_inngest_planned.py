"""Parallel groups across passes, as Go's executor keeps them in its queue: a group's race mode
belongs to its own steps (not to every step of the same name), and a pass cut by the request
limit (``InngestDriver.max_requests_per_pass``) leaves the steps it planned but did not ask for
queued: the next pass asks for them at once, even while a wait of their group is pending, and
a race-mode step asked for then still races (a discovery after it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from _stepline_dev import Dev, PassCounter, stepline_dev

from conftest import SdkApp
from stepline import App, Event
from stepline.sdk.run import Run

pytestmark = pytest.mark.timeout(600)


def _script(kind: str) -> str:
    return "py_parallel_app.py" if kind == "py" else "parallel_app.js"


def _dev(
    tmp_path: Path, start_app: Callable[..., SdkApp], kind: str, driver: PassCounter
) -> AbstractAsyncContextManager[Dev]:
    """The module's dev server, its SDK app the module's one (``same_sdk_app``)."""
    app = App("stepline-dev")
    return stepline_dev(
        tmp_path, start_app, kind, app, script=_script(kind), driver=driver, same_sdk_app=True
    )


async def _settled(d: Dev, driver: PassCounter, run_id: str, pending: set[str]) -> Run:
    """The run once it waits on exactly the steps ``pending`` and no pass of it is running."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        run = await d.t.app.get_run(run_id)
        assert run is not None
        waiting = {s.id for s in run.steps if s.status == "PENDING"}
        if run.status == "WAITING" and waiting == pending and driver.running == 0:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} is {run.status} waiting on {waiting}")
        await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it


@pytest.mark.parametrize("kind", ["js", "py"])
async def test_a_wait_mode_step_named_as_a_race_mode_one_does_not_race(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    driver = PassCounter()
    async with _dev(tmp_path, start_app, kind, driver) as d:
        run_id = await d.run_of("race-same-name", Event("par/same", {}))
        await _settled(d, driver, run_id, {"gate"})
        await d.t.send(Event("par/same-1", {}))  # the race-mode group ends
        await _settled(d, driver, run_id, {"gate", "other"})
        before, passes = (await d.app_state(run_id))["requests"], driver.passes
        await d.t.send(Event("par/same-3", {}))  # "other" resolved: the run is woken
        await d.until(lambda: driver.passes > passes, "the woken pass")
        await _settled(d, driver, run_id, {"gate"})
        # the second "gate" is of a wait-mode group: no request until it is resolved too
        assert (await d.app_state(run_id))["requests"] == before
        await d.t.send(Event("par/same-2", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", {"second": [True, True]})
        assert (await d.app_state(run_id))["requests"] == before + 1  # the one discovery


async def _cut_pass(
    tmp_path: Path, start_app: Callable[..., SdkApp], kind: str, fn: str, limit: int
) -> dict[str, object]:
    """Run ``fn`` (three steps next to a wait "hold") with at most ``limit`` requests a pass:
    what the SDK app counted once the run waits on the wait alone (its three steps ran), after
    checking that releasing the wait completes the run."""
    driver = PassCounter(max_requests_per_pass=limit)
    async with _dev(tmp_path, start_app, kind, driver) as d:
        run_id = await d.run_of(fn, Event(f"par/{fn}", {}))
        await _settled(d, driver, run_id, {"hold"})
        state = await d.app_state(run_id)
        assert sorted(state["ran"]) == ["p1", "p2", "p3"]
        await d.t.send(Event("par/planned-release", {}))
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", ["p1", "p2", "p3", True])
        assert sorted((await d.app_state(run_id))["ran"]) == ["p1", "p2", "p3"]
        return state


@pytest.mark.parametrize("kind", ["js", "py"])
async def test_steps_planned_in_a_cut_pass_are_asked_for_in_the_next_one(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    # the first pass: a discovery planning p1-p3 next to the wait, p1 asked for, then the
    # limit; the next pass asks for p2 and p3 although the wait is pending (Go keeps them
    # queued), then the run waits
    state = await _cut_pass(tmp_path, start_app, kind, "planned-wait", 2)
    if kind == "py":
        assert state["requests"] == 4


@pytest.mark.parametrize("kind", ["js", "py"])
async def test_a_race_mode_step_planned_in_a_cut_pass_races_in_the_next_one(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp]
) -> None:
    state = await _cut_pass(tmp_path, start_app, kind, "planned-race", 3)
    if kind == "py":
        # pass 1: the discovery, p1 and p2 (the discoveries after them refused by the limit);
        # pass 2: p3 and the refused discovery, then a discovery after p3 (it races)
        assert state["requests"] == 6
