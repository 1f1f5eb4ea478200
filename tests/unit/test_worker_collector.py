"""The garbage collector of a process the worker runner owns (``App.run_worker``, what
``stepline worker`` calls): the start-up objects frozen, young collections rarer while the
worker runs (``stepline._worker_collector``), the thresholds as they were once it returned."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stepline import App
from stepline._worker_collector import YOUNG_OBJECTS


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The collector's thresholds before the test, put back after it whatever it did."""
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.set_threshold(*before)


class _Probe:
    """A worker that only looks at the collector while it runs."""

    def __init__(self) -> None:
        self.threshold: tuple[int, int, int] | None = None
        self.frozen = -1

    async def run(self) -> None:
        self.threshold = gc.get_threshold()
        self.frozen = gc.get_freeze_count()

    def stop(self) -> None:
        pass


def test_the_worker_runner_freezes_the_start_up_and_collects_the_young_less_often(
    monkeypatch: pytest.MonkeyPatch, thresholds: tuple[int, int, int]
) -> None:
    app = App("collector", db="memory://")
    probe = _Probe()
    made: list[dict[str, object]] = []

    def make_worker(**options: object) -> _Probe:
        made.append(options)
        return probe

    monkeypatch.setattr(app, "make_worker", make_worker)
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    frozen_before = gc.get_freeze_count()
    try:
        app.run_worker(concurrency=3)
    finally:
        app.close()
    assert made == [{"concurrency": 3}]
    assert probe.frozen > frozen_before  # the app, its store, the modules: out of the walks
    assert probe.threshold == (YOUNG_OBJECTS, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)  # as it found them once the worker stopped
