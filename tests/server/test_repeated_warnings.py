"""``RepeatedWarnings``: a warning once per window and key, its repeats told when the window
ends. The windows' ends are run by hand here (a scheduler that records them), not by time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from stepline.server._repeated_warnings import RepeatedWarnings

LOGGER = "tests.repeated_warnings"


class Ends:
    """A scheduler that keeps the windows' ends for the test to run."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> None:
        assert delay == 10.0
        self.pending.append(callback)
        # (no loop of its own: returns None, as a scheduler that cannot lose its ends)

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def messages() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        caplog.clear()
        return found

    return messages


def test_repeats_in_a_window_are_counted_and_told_when_it_ends(
    logged: Callable[[], list[str]],
) -> None:
    ends = Ends()
    warnings = RepeatedWarnings(logging.getLogger(LOGGER), 10.0, ends)
    for i in range(5):
        warnings.warn("down", f"request {i}: the store is down")
    assert logged() == ["request 0: the store is down"]

    ends.run()  # the window ends: its 4 repeats in one line, the last named
    assert logged() == ["4 more like it in the last 10 s, the last: request 4: the store is down"]

    warnings.warn("down", "request 5: the store is down")  # the failure goes on: counted
    assert logged() == []
    ends.run()
    assert logged() == ["1 more like it in the last 10 s, the last: request 5: the store is down"]

    ends.run()  # a window with no repeat closes: the next warning is logged at once
    assert logged() == []
    warnings.warn("down", "request 6: the store is down")
    assert logged() == ["request 6: the store is down"]


def test_each_key_has_its_own_window(logged: Callable[[], list[str]]) -> None:
    warnings = RepeatedWarnings(logging.getLogger(LOGGER), 10.0, Ends())
    warnings.warn("disk full", "a: disk full")
    warnings.warn("connection lost", "b: connection lost")
    warnings.warn("disk full", "c: disk full")
    assert logged() == ["a: disk full", "b: connection lost"]


def test_without_a_running_loop_every_warning_is_logged(
    logged: Callable[[], list[str]],
) -> None:
    warnings = RepeatedWarnings(logging.getLogger(LOGGER))  # the running loop's call_later
    warnings.warn("down", "one")
    warnings.warn("down", "two")
    assert logged() == ["one", "two"]


def test_a_window_whose_loop_closed_ends_at_the_next_warning(
    logged: Callable[[], list[str]],
) -> None:
    """A window's end scheduled on a loop that closed before it ran: its repeats are told at
    the next warning of its key, which is logged (the key is not silenced for good)."""
    warnings = RepeatedWarnings(logging.getLogger(LOGGER))

    async def warn(*messages: str) -> None:
        for message in messages:
            warnings.warn("down", message)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(warn("one", "two"))
    loop.close()  # the window's end never runs
    assert logged() == ["one"]
    asyncio.run(warn("three", "four"))
    assert logged() == ["1 more like it in the last 10 s, the last: two", "three"]
