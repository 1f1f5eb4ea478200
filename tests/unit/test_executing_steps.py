"""The display of a pass's executing steps (``engine/_executing.py``): the passes of one loop
share one timer, which shows the rounds still executing ``SHOW_AFTER`` after their start and
none that ended."""

from __future__ import annotations

import asyncio
import gc
import weakref
from types import SimpleNamespace
from typing import Any

import pytest

from stepline.engine import _executing
from stepline.engine._executing import ExecutingSteps
from stepline.engine._ops import _Op
from stepline.store.records import Lease


class _Writer:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def submit(self, job: Any) -> asyncio.Future[Any]:
        self.jobs.append(job)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _pass(writer: _Writer, run_id: str) -> ExecutingSteps:
    engine: Any = SimpleNamespace(writer=writer)
    lease = Lease(run_id=run_id, token=f"t-{run_id}")
    return ExecutingSteps(engine, lease, asyncio.get_running_loop(), {})


def _op(step_id: str) -> _Op:
    return _Op("run", step_id, step_id, f"h-{step_id}", asyncio.get_running_loop().create_future())


async def test_the_passes_of_a_loop_share_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    made: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        made.append(when)
        return call_at(when, callback, *args)

    monkeypatch.setattr(loop, "call_at", counting)
    writer = _Writer()
    passes = [_pass(writer, f"r{i}") for i in range(20)]
    for _ in range(3):  # three rounds of quick steps in each pass
        for steps in passes:
            steps.show_later((_op("s"),), 0, 0.0)
        for steps in passes:
            steps.done()
    assert len(made) == 1  # one a pass: 20
    assert writer.jobs == []


async def test_a_round_still_executing_is_shown_and_one_that_ended_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_executing, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(_executing, "LOOK_EVERY", 0.0)
    writer = _Writer()
    quick, slow = _pass(writer, "quick"), _pass(writer, "slow")
    quick.show_later((_op("q"),), 0, 0.0)
    slow.show_later((_op("s"),), 0, 0.0)
    quick.done()
    while not writer.jobs:
        await asyncio.sleep(0)
    assert len(writer.jobs) == 1
    recorded: list[Any] = []
    tx = SimpleNamespace(mark_steps_running=lambda *a: recorded.append(a))
    writer.jobs[0](tx)
    [(run_id, token, records)] = recorded
    assert (run_id, token) == ("slow", "t-slow")
    assert [(r.step_id, r.status) for r in records] == [("s", "RUNNING")]
    slow.done()
    slow.show_later((_op("s2"),), 1, 0.0)  # a later round of the same pass: shown again
    while len(writer.jobs) < 2:
        await asyncio.sleep(0)
    slow.done()


def test_a_closed_loop_is_not_kept_alive_by_the_rounds_it_had() -> None:
    """The rounds of each loop are found by the loop (and the last one looked up kept apart):
    neither kept the loop alive, nor did the timer of a round still executing when it
    closed; a closed loop whose passes ended is collected."""
    writer = _Writer()

    async def rounds() -> None:
        steps = _pass(writer, "r")
        steps.show_later((_op("s"),), 0, 0.0)  # the loop's timer set: pending at its close
        steps.done()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(rounds())
    loop.close()
    closed = weakref.ref(loop)
    del loop
    gc.collect()
    assert closed() is None
