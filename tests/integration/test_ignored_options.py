"""Options a function's runs would never use are said at registration (issue 6, risks d).

A ``batch_events`` function's runs get no ``cancel_on`` and no ``timeouts.start``, as in
Inngest (pkg/execution/executor/executor.go, ``Schedule``: cancellation pauses and the start
timeout only ``if req.BatchID == nil``); Inngest's server accepts such a config silently, its
JS SDK refuses it. ``App.function`` warns (a ``UserWarning`` at the user's line), so the
option is never dropped silently; the runs behave as in Inngest
(``tests/integration/test_flow_inngest.py::test_a_batch_run_gets_no_cancel_on``).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from stepline import App, BatchEvents, CancelOn, Context, Timeouts, TriggerEvent


def test_a_batch_function_with_cancel_on_warns_at_the_users_line(app: App) -> None:
    with pytest.warns(UserWarning, match="is ignored") as caught:

        @app.function(
            id="batched",
            trigger=TriggerEvent("item"),
            batch_events=BatchEvents(max_size=10, timeout="1m"),
            cancel_on=[CancelOn("stop"), CancelOn("halt")],
        )
        async def batched(ctx: Context) -> Any:
            return None

    [warning] = caught
    assert str(warning.message) == (
        "function 'batched': cancel_on ('stop', 'halt') is ignored: a batch_events function's "
        "runs are never cancelled by an event, as in Inngest (cancelling a run by hand still works)"
    )
    assert warning.filename == __file__  # the user's line, not Stepline's
    assert "batched" in {f.id for f in app.functions}  # registered all the same


def test_a_batch_function_with_a_start_timeout_warns(app: App) -> None:
    with pytest.warns(UserWarning, match=r"'batched': timeouts.start is ignored") as caught:

        @app.function(
            id="batched",
            trigger=TriggerEvent("item"),
            batch_events=BatchEvents(max_size=10, timeout="1m"),
            timeouts=Timeouts(start="1m", finish="1h"),
        )
        async def batched(ctx: Context) -> Any:
            return None

    assert len(caught) == 1  # finish applies: nothing said of it


def test_cancel_on_and_timeouts_a_function_uses_warn_nothing(app: App) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @app.function(
            id="single",
            trigger=TriggerEvent("item"),
            cancel_on=CancelOn("stop"),
            timeouts=Timeouts(start="1m"),
        )
        async def single(ctx: Context) -> Any:
            return None

        @app.function(
            id="batched",
            trigger=TriggerEvent("item"),
            batch_events=BatchEvents(max_size=10, timeout="1m"),
            timeouts=Timeouts(finish="1h"),
        )
        async def batched(ctx: Context) -> Any:
            return None

        @app.function(  # the events its if_ rejects run alone, with cancel_on
            id="filtered",
            trigger=TriggerEvent("item"),
            batch_events=BatchEvents(max_size=10, timeout="1m", if_="event.data.bulk == true"),
            cancel_on=CancelOn("stop"),
        )
        async def filtered(ctx: Context) -> Any:
            return None
