"""Events are environment-wide across kinds of apps too: a native ``App`` in another process,
sending straight to the database, starts the function of an Inngest SDK app that a running
``stepline dev`` serves (as Inngest's server starts every synced app's matching functions).

Before, the native sender planned only its own app's functions: the SDK app's ``square`` never
ran and ``send`` reported that the event started nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _devproc import dev_process, ended, free_port, http_json, sdk_process, wait_for

from stepline import App, Event

pytestmark = pytest.mark.timeout(300)


def test_a_native_app_in_another_process_starts_an_sdk_apps_function(tmp_path: Path) -> None:
    dev_port, py_port = free_port(), free_port()
    url = f"http://127.0.0.1:{dev_port}"
    py_url = f"http://127.0.0.1:{py_port}/api/inngest"
    sync = ("-u", py_url, "--no-discovery", "--poll-interval", "0.2")
    with sdk_process("py", py_port, url, tmp_path), dev_process(tmp_path, dev_port, *sync):

        def synced() -> bool:
            status, info = http_json("GET", f"{url}/dev")
            return status == 200 and "py-mixed-square" in {f["id"] for f in info["functions"]}

        wait_for(synced, "the SDK app to sync")
        sender = App("billing", db=str(tmp_path / "stepline.db"))  # this process: no worker
        try:
            [outcome] = asyncio.run(sender.send_with_outcomes(Event("mixed/square", {"n": 7})))
        finally:
            sender.close()
        assert outcome.run_ids == ()
        assert [fn for _, fn in outcome.handed_to] == ["py-mixed-square"]
        run = wait_for(lambda: ended(url, "py-mixed-square"), "the SDK function's run to end")
        assert (run["status"], run["output"]) == ("COMPLETED", {"squared": 49}), run
        assert run["event_ids"] == [outcome.event_id]
