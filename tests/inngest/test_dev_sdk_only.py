"""``stepline dev`` with no Python app, as a drop-in for Inngest's dev server: real SDK apps (JS
4.x and Python) configured only with ``INNGEST_DEV=1`` / ``INNGEST_BASE_URL`` are synced by
``-u URL`` (asked again until they are up), run, send events to each other and invoke each
other across apps; ``GET /dev`` lists their functions.

issue 10, "Dev and production modes": ``stepline dev --port 8288`` runs without a Python app.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from _devproc import dev_process, ended, free_port, http_json, mixed_apps, sdk_process, wait_for
from _stepline_dev import tiny_registration
from click.testing import CliRunner

from conftest import _npm_ci
from stepline import App
from stepline.cli import cli
from stepline.server import ServerSettings, create_app
from stepline.testing import MockClock, TestEngine

pytestmark = pytest.mark.timeout(300)


def test_sdk_apps_alone_sync_run_send_events_and_invoke_each_other(tmp_path: Path) -> None:
    _npm_ci()
    # the server first: it asks the apps to sync until they are up
    with mixed_apps(tmp_path, "--no-discovery", dev_first=True) as apps:
        url, py_url, js_url, out = apps.url, apps.py_url, apps.js_url, apps.out

        def listed() -> set[str]:
            status, info = http_json("GET", f"{url}/dev")
            assert status == 200, info
            return {fn["id"] for fn in info["functions"]}

        wanted = {"py-mixed-greet", "py-mixed-square", "py-mixed-on-native"}
        wanted |= {"js-mixed-double", "js-mixed-relay"}
        wait_for(lambda: listed() >= wanted, "both apps' functions")
        status, sent = http_json(
            "POST",
            f"{url}/e/NO_EVENT_KEY_SET",
            {"name": "mixed/start", "data": {"n": 3, "name": "ada"}},
        )
        assert status == 200, sent

        greet = wait_for(lambda: ended(url, "py-mixed-greet"), "the Python run")
        assert greet["status"] == "COMPLETED", greet
        assert greet["output"] == {"shouted": "ADA", "doubled": {"doubled": 6}}
        assert greet["event_ids"] == sent["ids"]
        relay = wait_for(lambda: ended(url, "js-mixed-relay"), "the JS run")
        assert relay["status"] == "COMPLETED", relay
        assert relay["output"] == {"n": 7, "squared": {"squared": 49}}
        double = wait_for(lambda: ended(url, "js-mixed-double"), "the invoked JS run")
        square = wait_for(lambda: ended(url, "py-mixed-square"), "the invoked Python run")
        assert (double["output"], square["output"]) == ({"doubled": 6}, {"squared": 49})
        for line in (f"synced the SDK app at {py_url}", f"synced the SDK app at {js_url}"):
            wait_for(lambda line=line: line in out.read_text(), line)  # once the PUT is answered


REGISTRATION = tiny_registration(sdk="py:v0.5.19")


async def test_a_registration_unchanged_is_not_modified_and_dev_lists_the_functions(
    tmp_path: Path,
) -> None:
    # Inngest's dev server answers `modified: false` to a sync equal to the last one; `stepline
    # dev -u` syncs its apps at every poll, which must change nothing then
    async with TestEngine(
        App("stepline-dev"), store="sqlite", path=tmp_path / "x.db", clock=MockClock()
    ) as t:
        settings = ServerSettings(dev=True, allow_unauthenticated=True)
        transport = httpx.ASGITransport(app=create_app(t.app, settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:
            first = await client.post("/fn/register", json=REGISTRATION)
            again = await client.post("/fn/register", json=REGISTRATION)
            changed = await client.post(
                "/fn/register", json={**REGISTRATION, "url": "http://127.0.0.1:10/api/inngest"}
            )
            info = await client.get("/dev")
    assert [r.status_code for r in (first, again, changed)] == [200, 200, 200]
    assert [r.json()["modified"] for r in (first, again, changed)] == [True, False, True]
    [fn] = info.json()["functions"]  # as inngest-js's test helpers read it (checkIntrospection)
    assert (fn["id"], fn["slug"], fn["name"], fn["triggers"]) == (
        "tiny-a",
        "tiny-a",
        "a",
        [{"event": "tiny/a"}],
    )
    url = "http://127.0.0.1:9/api/inngest?fnId=tiny-a&stepId=step"
    assert fn["steps"] == [{"id": "step", "name": "a", "uri": url}]
    assert info.json()["handlers"] == [
        {
            "name": "tiny",
            "url": "http://127.0.0.1:10/api/inngest",
            "sdk": "py:v0.5.19",
            "functions": 1,
        }
    ]


def test_an_sdk_url_that_is_no_http_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["dev", "-u", "localhost:3000/api/inngest"])
    assert result.exit_code == 2
    assert "'localhost:3000/api/inngest' is not an app's serve URL" in result.output


def test_an_sdk_app_on_port_is_discovered_and_synced_without_being_named(tmp_path: Path) -> None:
    # Inngest's dev server looks for apps on the usual local ports and on $PORT, at the usual
    # serve paths; stepline dev without MODULE:APP does the same (no -u here)
    dev_port, py_port = free_port(), free_port()
    url = f"http://127.0.0.1:{dev_port}"
    with (
        sdk_process("py", py_port, url, tmp_path),
        dev_process(
            tmp_path, dev_port, "--poll-interval", "0.2", extra_env={"PORT": str(py_port)}
        ) as (_, out),
    ):

        def listed() -> set[str]:
            return {fn["id"] for fn in http_json("GET", f"{url}/dev")[1]["functions"]}

        wait_for(lambda: "py-mixed-greet" in listed(), "the discovered app's functions")
        app_url = f"http://127.0.0.1:{py_port}/api/inngest"
        wait_for(lambda: f"synced the SDK app at {app_url}" in out.read_text(), "the log")
    assert f"discovered an SDK app at {app_url}" in out.read_text()


async def test_dev_info_asks_for_the_api_token_where_the_rest_api_does(tmp_path: Path) -> None:
    async with TestEngine(App("a"), store="sqlite", path=tmp_path / "x.db", clock=MockClock()) as t:
        settings = ServerSettings(api_tokens=("secret",))
        transport = httpx.ASGITransport(app=create_app(t.app, settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
            refused = await client.get("/dev")
            allowed = await client.get("/dev", headers={"Authorization": "Bearer secret"})
    assert (refused.status_code, allowed.status_code) == (401, 200)
