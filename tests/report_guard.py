"""A failure is always reported as itself, never as a dead xdist worker.

pytest-timeout's signal timer (``timeout`` in pyproject.toml) covers a test's whole protocol,
the making of its reports included. A test that failed near its timeout (a hang its own wait
bounded, under load) had the alarm fire while pytest formatted the failure (parsing the source
of each traceback entry): the ``Failed: Timeout`` raised inside pytest's own code was an
INTERNALERROR, the xdist worker died, and the failure itself was never shown (a
``test_rounds.py[postgres]`` worker, last stop). So the timer is paused while a report is made,
and a report pytest fails to make for any other reason falls back to the plain traceback.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    paused = 0.0
    if threading.current_thread() is threading.main_thread():
        paused = signal.getitimer(signal.ITIMER_REAL)[0]
        if paused:
            signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        return (yield)
    except (Exception, pytest.fail.Exception) as exc:
        return _plain_report(item, call, exc)
    finally:
        if paused:
            signal.setitimer(signal.ITIMER_REAL, paused)


def _plain_report(
    item: pytest.Item, call: pytest.CallInfo[None], error: BaseException
) -> pytest.TestReport:
    """The report of ``call`` (failed) with its exception's plain traceback, and why."""
    when = call.when
    assert when != "collect"  # a test's phases only
    failure = call.excinfo.value if call.excinfo is not None else error
    text = "".join(traceback.format_exception(failure))
    text += f"\n(pytest could not format this failure: {error!r})"
    return pytest.TestReport(
        item.nodeid,
        item.location,
        dict.fromkeys(item.keywords, 1),
        "failed",
        text,
        when,
        duration=call.duration,
        start=call.start,
        stop=call.stop,
        user_properties=item.user_properties,
    )
