"""The system events of SDK functions have Inngest's shapes (``pkg/event/event.go``
``InngestMetadata``, ``pkg/execution/executor/finalize.go``), read back from the events Stepline
stored (``GET /api/v1/events?name=``) after real JS 4.x and Python SDK apps ran under
``stepline dev``:

* ``inngest/function.invoked``: the payload's data plus ``_inngest`` (``fn_id`` the invoked
  function's slug, ``source_app_id``, ``source_fn_id``, ``correlation_id`` = ``<parent run
  id>.<hashed step id>``, ``expire``, ``gid``, ``name``);
* ``inngest/function.finished``: ``function_id`` the slug ``<app id>-<fn id>``, ``run_id``,
  ``event``/``events``, ``result``, the invoke's ``correlation_id`` for an invoked run;
* ``inngest/function.failed``: ``error`` = ``{error, name, message, stack}``, ``error.error``
  the executor's text (``NonRetriableError`` when the SDK said not to retry, ``invalid status
  code: <status>`` otherwise), no ``code``.

issue 10, "Both directions of events": system events have Inngest's shapes and slugs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _devproc import ended, http_json, mixed_apps, wait_for

from conftest import _npm_ci
from stepline.drivers.inngest import hash_step_id

pytestmark = pytest.mark.timeout(300)
INVOKED, FINISHED, FAILED = (
    "inngest/function.invoked",
    "inngest/function.finished",
    "inngest/function.failed",
)


def events(url: str, name: str) -> list[dict[str, Any]]:
    # Stepline's own list: Inngest's GET /v1/events lists none of Inngest's own events
    status, reply = http_json("GET", f"{url}/api/v1/events?name={name}&limit=100")
    assert status == 200, reply
    found: list[dict[str, Any]] = reply["data"]
    return found


def finished_of(url: str, function_id: str) -> dict[str, Any]:
    [data] = [e["data"] for e in events(url, FINISHED) if e["data"]["function_id"] == function_id]
    return data


def test_invoked_finished_and_failed_events_of_sdk_functions_have_inngests_shapes(
    tmp_path: Path,
) -> None:
    _npm_ci()
    with mixed_apps(tmp_path, "--no-discovery") as apps:
        url = apps.url
        wait_for(
            lambda: len(http_json("GET", f"{url}/dev")[1]["functions"]) == 9, "both apps' functions"
        )
        before = time.time()
        for name in ("mixed/start", "mixed/fail"):
            status, _ = http_json(
                "POST", f"{url}/e/NO_EVENT_KEY_SET", {"name": name, "data": {"n": 3, "name": "a"}}
            )
            assert status == 200
        greet = wait_for(lambda: ended(url, "py-mixed-greet"), "greet")
        relay = wait_for(lambda: ended(url, "js-mixed-relay"), "relay")
        double = wait_for(lambda: ended(url, "js-mixed-double"), "double")
        square = wait_for(lambda: ended(url, "py-mixed-square"), "square")
        py_fail = wait_for(lambda: ended(url, "py-mixed-fail"), "the Python failure")
        js_fail = wait_for(lambda: ended(url, "js-mixed-fail"), "the JS failure")
        assert [r["status"] for r in (greet, relay, double, square)] == ["COMPLETED"] * 4
        assert (py_fail["status"], js_fail["status"]) == ("FAILED", "FAILED")
        # every ending announced: 4 completed, 2 failed
        wait_for(lambda: len(events(url, FINISHED)) == 6, "six function.finished events")
        wait_for(lambda: len(events(url, FAILED)) == 2, "two function.failed events")

        # the invoke events: the payload's data and Inngest's _inngest, nothing else
        invoked = {e["data"]["_inngest"]["fn_id"]: e for e in events(url, INVOKED)}
        assert sorted(invoked) == ["js-mixed-double", "py-mixed-square"]
        for fn_id, source_app, source_fn, parent, step, data in (
            ("js-mixed-double", "py-mixed", "py-mixed-greet", greet, "double", {"n": 3}),
            ("py-mixed-square", "js-mixed", "js-mixed-relay", relay, "square", {"n": 7}),
        ):
            got = invoked[fn_id]["data"]
            metadata = got.pop("_inngest")
            assert got == data
            expire = metadata.pop("expire")
            assert metadata == {
                "fn_id": fn_id,
                "source_app_id": source_app,
                "source_fn_id": source_fn,
                "source_fn_v": 0,
                "correlation_id": f"{parent['run_id']}.{hash_step_id(step)}",
                "gid": "",
                "name": step,
            }
            # no timeout given: Inngest's longest, a year ahead
            assert expire > (before + 364 * 24 * 3600) * 1000

        # function.finished: slugs, result, correlation_id of invoked runs only
        done = finished_of(url, "js-mixed-double")
        assert (done["run_id"], done["result"]) == (double["run_id"], {"doubled": 6})
        assert done["correlation_id"] == f"{greet['run_id']}.{hash_step_id('double')}"
        assert done["event"]["name"] == INVOKED and done["events"] == [done["event"]]
        assert done["_inngest"] == {"status": "Completed"}
        top = finished_of(url, "py-mixed-greet")
        assert top["result"] == {"shouted": "A", "doubled": {"doubled": 6}}
        assert "correlation_id" not in top and "error" not in top
        assert top["event"]["name"] == "mixed/start"

        # function.failed: the executor's error text beside the SDK's error, no code
        failures = {e["data"]["function_id"]: e["data"] for e in events(url, FAILED)}
        assert sorted(failures) == ["js-mixed-fail", "py-mixed-fail"]
        # the Python SDK answers a function's error with a 500 (retriable): the executor's text;
        # the JS SDK's last attempt says not to retry (X-Inngest-No-Retry): NonRetriableError
        py_error = failures["py-mixed-fail"]["error"]
        assert (py_error["error"], py_error["name"], py_error["message"]) == (
            "invalid status code: 500",
            "RuntimeError",
            "py went wrong",
        )
        js_error = failures["js-mixed-fail"]["error"]
        assert (js_error["error"], js_error["name"], js_error["message"]) == (
            "NonRetriableError",
            "Error",
            "js went wrong",
        )
        for error in (py_error, js_error):
            assert "code" not in error and isinstance(error["stack"], str)
        assert failures["py-mixed-fail"]["_inngest"] == {"status": "Failed"}
        assert finished_of(url, "py-mixed-fail")["error"] == py_error
