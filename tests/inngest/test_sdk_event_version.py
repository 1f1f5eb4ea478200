"""An event's ``v`` reaches an SDK app's function as Inngest hands it over (the official JS SDK,
npm ``inngest`` 4.x, behind ``stepline dev``): the trigger event's (``event.v``, ``events[i].v``),
the event a ``step.waitForEvent`` got, and the one a ``step.invoke`` with ``v`` made; and the
event APIs give it back. (The Python SDK's ``Event`` model, PyPI ``inngest`` 0.5.x, has no ``v``:
it drops the field as it reads the request.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _devproc import ended, http_json, mixed_apps, runs_of, wait_for

from conftest import _npm_ci

pytestmark = pytest.mark.timeout(300)
FUNCTION = "js-mixed-versions"


def test_an_sdk_function_sees_the_v_of_its_event_its_wait_and_its_invoke(tmp_path: Path) -> None:
    _npm_ci()
    with mixed_apps(tmp_path, "--no-discovery") as apps:
        url = apps.url

        def listed() -> bool:
            status, info = http_json("GET", f"{url}/dev")
            assert status == 200, info
            return FUNCTION in {fn["id"] for fn in info["functions"]}

        wait_for(listed, "the JS app's functions")
        trigger = {"name": "mixed/versioned", "data": {"n": 1}, "v": "2026-12-01.1"}
        status, sent = http_json("POST", f"{url}/e/NO_EVENT_KEY_SET", trigger)
        assert status == 200, sent
        [run_id] = wait_for(lambda: [r["run_id"] for r in runs_of(url, FUNCTION)], "the run")

        def waiting() -> bool:
            status, run = http_json("GET", f"{url}/api/v1/runs/{run_id}")
            assert status == 200, run
            return any(step["kind"] == "wait" for step in run["steps"])

        wait_for(waiting, "the run's wait")
        go = {"name": "mixed/versioned.go", "data": {"n": 1}, "v": "go.2"}
        status, reply = http_json("POST", f"{url}/e/NO_EVENT_KEY_SET", go)
        assert status == 200, reply

        run = wait_for(lambda: ended(url, FUNCTION), "the run's end")
        assert run["status"] == "COMPLETED", run
        assert run["output"] == {
            "v": "2026-12-01.1",
            "vs": ["2026-12-01.1"],
            "invoked": "invoked.1",
            "waited": "go.2",
        }
        [event_id] = sent["ids"]
        found: dict[str, Any] = {}
        for path in (f"/v1/events/{event_id}", f"/api/v1/events/{event_id}"):
            status, reply = http_json("GET", f"{url}{path}")
            assert status == 200, reply
            found[path] = reply
        assert found[f"/v1/events/{event_id}"]["data"]["v"] == "2026-12-01.1"
        assert found[f"/api/v1/events/{event_id}"]["v"] == "2026-12-01.1"
