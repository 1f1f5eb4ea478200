"""A ``batch_events`` function given a ``cancel_on`` its runs never use (as in Inngest): the
warning ``App.function`` gives is expected (tests/integration/test_ignored_options.py)."""

from __future__ import annotations

import re

import pytest

from stepline import App, BatchEvents, CancelOn, TriggerEvent
from stepline.sdk.function import FunctionDef, Handler


def batch_with_cancel_on(
    app: App, handler: Handler, trigger: str, batch: BatchEvents, cancel_on: str
) -> FunctionDef:
    """Register ``handler`` (its name is the function's id) on ``app``: triggered by
    ``trigger``, batched by ``batch``, with a ``cancel_on`` of ``cancel_on`` ignored."""
    ignored = rf"cancel_on \({re.escape(repr(cancel_on))}\) is ignored"
    with pytest.warns(UserWarning, match=ignored):  # said at registration
        return app.function(
            id=handler.__name__,
            trigger=TriggerEvent(trigger),
            batch_events=batch,
            cancel_on=CancelOn(cancel_on),
        )(handler)
