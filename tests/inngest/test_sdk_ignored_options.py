"""An SDK app's function with options its runs never use (issue 6, risks d): the sync is
accepted, as Inngest's server accepts it (a batch's run gets no ``cancel`` and no
``timeouts.start``: executor.go, ``Schedule``), and what is ignored is logged, once a sync."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from _stepline_dev import tiny_registration

from stepline import App
from stepline.drivers.inngest import SdkApps
from stepline.testing import MockClock, TestEngine


async def test_a_synced_batch_function_with_cancel_is_accepted_and_the_ignored_cancel_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = App("stepline-dev")
    body = tiny_registration()
    function = body["functions"][0]
    function["batchEvents"] = {"maxSize": 10, "timeout": "5s"}
    function["cancel"] = [{"event": "tiny/stop"}]
    async with TestEngine(app, store="memory", clock=MockClock(autojump=False)):
        apps = SdkApps(app)
        with caplog.at_level(logging.WARNING):
            await apps.register(body)
            await apps.register(body)  # the same body again: nothing synced, nothing said
        [synced] = apps.apps["tiny"].functions
        assert [c.event for c in synced.definition.options.cancel_on] == ["tiny/stop"]
    said = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert said == [
        "SDK app 'tiny': function 'tiny-a': cancel_on ('tiny/stop') is ignored: a "
        "batch_events function's runs are never cancelled by an event, as in Inngest "
        "(cancelling a run by hand still works)"
    ]
