"""A mixed app in a real headless Chromium (Debian's, driven by Playwright): a native Stepline app
(``mixed_native.py``) served by ``stepline dev`` beside a Python-SDK app and a JS-SDK app it syncs
with ``-u``. One event sent from the dashboard goes round all three, each passing events to the
next and invoking the others:

    mixed/start → py greet ─invoke→ js double; sends mixed/js
    mixed/js → js relay ─invoke→ py square; sends mixed/native
    mixed/native → native finish ─invoke→ js double; sends mixed/from-native
    mixed/from-native → py on-native ─invoke (as "mixed-triple")→ native triple

and the dashboard shows the functions of the three apps together (each SDK function with its
app and URL) and every run of the chain, completed, on the live runs page.

issue 10, "What it must show": the mixed app, visible together on the dashboard.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _devproc import ended, http_json, mixed_apps, wait_for

from conftest import _npm_ci

# as tests/dashboard/_devserver.py (Debian's chromium-headless-shell)
CHROMIUM = os.environ.get("STEPLINE_CHROMIUM", "/usr/bin/chromium-headless-shell")

if not Path(CHROMIUM).exists():  # pragma: no cover - the setup installs it
    if os.environ.get("CI"):
        raise RuntimeError(f"Chromium is missing at {CHROMIUM}: scripts/setup installs it")
    pytest.skip(
        f"no Chromium at {CHROMIUM} (bash scripts/setup installs it)", allow_module_level=True
    )

from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(300)
WAIT_MS = 30_000  # a bound on each wait for the page (never a sleep)
CHAIN = [
    "py-mixed-greet",
    "js-mixed-double",
    "js-mixed-relay",
    "py-mixed-square",
    "finish",
    "py-mixed-on-native",
    "triple",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def test_python_js_and_native_functions_pass_events_invoke_each_other_on_one_dashboard(
    browser: Browser, tmp_path: Path
) -> None:
    _npm_ci()
    with mixed_apps(tmp_path, app="mixed_native:app") as apps:
        url, py_url, js_url = apps.url, apps.py_url, apps.js_url
        wait_for(
            lambda: len(http_json("GET", f"{url}/dev")[1]["functions"]) == 9, "both apps' functions"
        )
        page = browser.new_page()

        # the functions of the three apps on one page, each SDK function with its app and URL
        page.goto(f"{url}/functions")
        for fn, app, fn_url in (
            ("py-mixed-greet", "py-mixed", f"{py_url}?fnId=py-mixed-greet&stepId=step"),
            ("js-mixed-relay", "js-mixed", f"{js_url}?fnId=js-mixed-relay&stepId=step"),
        ):
            card = page.locator(f"article[data-fn={fn}]")
            expect(card).to_have_attribute("data-app", app)
            expect(card.locator(".sdk-app")).to_contain_text(fn_url)
        for native in ("finish", "triple"):
            expect(page.locator(f"article[data-fn={native}]")).to_have_attribute("data-app", "")

        # the live runs page is open when the event is sent from the dashboard's form
        watcher = browser.new_page()
        watcher.goto(f"{url}/runs")
        expect(watcher.locator("#live-state")).to_have_attribute(
            "data-state", "on", timeout=WAIT_MS
        )
        page.goto(f"{url}/send")
        page.fill("#event-name", "mixed/start")
        page.fill("#event-data", '{"n": 3, "name": "ada"}')
        page.click("#send-button")
        expect(page.locator("#send-result")).to_contain_text("Sent", timeout=WAIT_MS)

        for fn in CHAIN:
            rows = watcher.locator(f"tr[data-fn={fn}]")
            count = 2 if fn == "js-mixed-double" else 1  # invoked by Python and by native
            expect(rows).to_have_count(count, timeout=WAIT_MS)
            for i in range(count):
                expect(rows.nth(i).locator(".status")).to_have_text("completed", timeout=WAIT_MS)

        # the end of the chain: 3 doubled (6), plus one (7), squared (49), doubled (98), tripled
        last = wait_for(lambda: ended(url, "py-mixed-on-native"), "the last run")
        assert last["output"] == {"tripled": {"tripled": 294}}
        watcher.goto(f"{url}/runs/{last['run_id']}")
        expect(watcher.locator("#run-output")).to_contain_text("294", timeout=WAIT_MS)
        expect(watcher.locator("details.tl-step[data-step=triple]")).to_have_count(1)
        finish = wait_for(lambda: ended(url, "finish"), "the native run")
        assert finish["output"] == {"doubled": {"doubled": 98}}
        watcher.close()
        page.close()
