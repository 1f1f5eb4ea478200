"""The pause of the automatic garbage collector around an ingest verb (engine/_collector.py)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stepline import App, Event, TriggerEvent
from stepline.engine._collector import collector_paused
from stepline.engine._ingest_batch import IngestBatcher
from stepline.testing import TestEngine


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    """Each test starts with the collector on, and leaves it as it found it."""
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_the_collector_is_off_during_a_pause_and_on_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_pause_that_raises_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_of_two_threads_end_with_the_last() -> None:
    entered, leave = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with collector_paused():
            entered.set()
            leave.wait(30)
        seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert entered.wait(30)
    assert not gc.isenabled()  # the other thread's pause is still in progress
    leave.set()
    thread.join(30)
    assert seen == [True]
    assert gc.isenabled()


async def test_an_ingest_job_runs_with_the_collector_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App("collector")

    @app.function(id="fn", trigger=TriggerEvent("go"))
    async def fn(ctx: Any) -> None:
        return None

    seen: list[bool] = []
    ingest_group = IngestBatcher._ingest_group

    def recording(self: IngestBatcher, tx: Any, group: Any) -> Any:
        seen.append(gc.isenabled())
        return ingest_group(self, tx, group)

    monkeypatch.setattr(IngestBatcher, "_ingest_group", recording)
    async with TestEngine(app):
        await app.send_async([Event(name="go"), Event(name="other")])
    assert seen == [False]
    assert gc.isenabled()
