"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against
a real ``stepline dev`` / ``stepline server`` process: live updates without reloading, the
timeline, cancel, replay from a step, login and logout. Few and bounded: they share 2 cores."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _devserver import CHROMIUM, dev_server  # noqa: E402

if not Path(CHROMIUM).exists():  # pragma: no cover - the setup installs it
    if os.environ.get("CI"):
        raise RuntimeError(f"Chromium is missing at {CHROMIUM}: scripts/setup installs it")
    pytest.skip(
        f"no Chromium at {CHROMIUM} (bash scripts/setup installs it)", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, Route, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.timeout(180)
WAIT_MS = 20_000  # a bound on each wait for the page (never a sleep)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def _send(page: Page, url: str, name: str, data: str) -> str:
    page.goto(f"{url}/send")
    page.fill("#event-name", name)
    page.fill("#event-data", data)
    page.click("#send-button")
    result = page.locator("#send-result")
    expect(result).to_contain_text("Sent", timeout=WAIT_MS)
    found = re.search(r"Sent (\S+):", result.inner_text())
    assert found
    return found.group(1)


def test_live_runs_timeline_cancel_and_replay(browser: Browser, tmp_path: Path) -> None:
    with dev_server(tmp_path) as url:
        watcher = browser.new_page()
        sender = browser.new_page()
        watcher.goto(f"{url}/runs")
        expect(watcher.locator("#live-state")).to_have_attribute(
            "data-state", "on", timeout=WAIT_MS
        )
        watcher.evaluate("window.notReloaded = true")

        # an event sent from the form: its run appears on the open runs page, no reload
        _send(sender, url, "order/created", '{"orderId": "o-1", "amount": 42, "customer": "c"}')
        row = watcher.locator("tr[data-fn=process-order]")
        expect(row).to_have_count(1, timeout=WAIT_MS)
        expect(row.locator(".status")).to_have_text("completed", timeout=WAIT_MS)
        assert watcher.evaluate("window.notReloaded") is True

        # its page: each step on the timeline, with its output
        row.locator("a.mono").click()
        steps = watcher.locator("details.tl-step")
        expect(steps).to_have_count(2, timeout=WAIT_MS)
        for step_id, text in (
            ("reserve-stock", '"reserved": true'),
            ("charge-card", '"charged": 42'),
        ):
            step = watcher.locator(f"details.tl-step[data-step={step_id}]")
            expect(step.locator(".seg-ok")).to_have_count(1)
            step.locator("> summary").click()
            expect(step.locator(".step-output")).to_contain_text(text)

        # a sleeping run, cancelled from its page (the page follows live)
        _send(sender, url, "reminder/scheduled", '{"email": "a@example.com"}')
        watcher.goto(f"{url}/runs?function=send-reminder")
        sleeping = watcher.locator("tr[data-fn=send-reminder]")
        expect(sleeping).to_have_attribute("data-status", "SLEEPING", timeout=WAIT_MS)
        expect(sleeping.locator(".waiting")).to_contain_text("sleeping until")
        sleeping.locator("a.mono").click()
        expect(watcher.locator("#waiting-on")).to_contain_text("sleeping until")
        expect(watcher.locator(".seg-sleep")).to_have_count(1)
        watcher.once("dialog", lambda dialog: dialog.accept())
        watcher.click("#cancel-run")
        expect(watcher.locator("h1 .status")).to_have_text("cancelled", timeout=WAIT_MS)
        expect(watcher.locator("#cancel-run")).to_have_count(0)

        # a failed run, replayed from its failed step: the step before keeps its result
        _send(sender, url, "inventory/sync", "{}")
        watcher.goto(f"{url}/runs?status=FAILED")
        failed = watcher.locator("tr[data-fn=sync-inventory]")
        expect(failed).to_have_count(1, timeout=WAIT_MS)
        failed_id = failed.get_attribute("data-run")
        failed.locator("a.mono").click()
        expect(watcher.locator("#run-error")).to_contain_text("warehouse API refused")
        push = watcher.locator("details.tl-step[data-step=push-rows]")
        push.locator("> summary").click()
        expect(push.locator(".attempts")).to_contain_text("NonRetriableError")
        push.locator("button.replay-from").click()
        watcher.wait_for_url(re.compile(r"/runs/(?!" + str(failed_id) + ")"), timeout=WAIT_MS)
        expect(watcher.locator("dl.facts")).to_contain_text(str(failed_id))  # "Replay of"
        expect(watcher.locator("h1 .status")).to_have_text("failed", timeout=WAIT_MS)
        load = watcher.locator("details.tl-step[data-step=load-rows]")
        expect(load.locator(".status")).to_have_text("completed")
        expect(load.locator(".seg-ok")).to_have_count(0)  # not run again: no attempt here

        # the event stream labels, live, the runs each event started, resumed and cancelled
        submitted = [
            _send(sender, url, "expense/submitted", f'{{"expenseId": "{expense}"}}')
            for expense in ("e-1", "e-2")
        ]
        watcher.goto(f"{url}/runs?function=await-approval")
        waiting = watcher.locator("tr[data-fn=await-approval][data-status=WAITING]")
        expect(waiting).to_have_count(2, timeout=WAIT_MS)
        watcher.goto(f"{url}/events")
        expect(watcher.locator("#live-state")).to_have_attribute(
            "data-state", "on", timeout=WAIT_MS
        )
        watcher.evaluate("window.notReloaded = true")
        approved = _send(sender, url, "expense/approved", '{"expenseId": "e-1"}')
        withdrawn = _send(sender, url, "expense/withdrawn", '{"expenseId": "e-2"}')
        for event_id, effect in ((approved, "resumed"), (withdrawn, "cancelled")):
            chip = watcher.locator(f"tr[data-event='{event_id}'] .chip[data-effect={effect}]")
            expect(chip).to_have_count(1, timeout=WAIT_MS)
            expect(chip).to_contain_text(f"{effect} await-approval")
        assert watcher.evaluate("window.notReloaded") is True
        watcher.reload()  # read back from the database, not only pushed
        expect(watcher.locator(".chip[data-effect=resumed]")).to_have_count(1, timeout=WAIT_MS)
        expect(watcher.locator(".chip[data-effect=cancelled]")).to_have_count(1)
        for event_id in submitted:
            started = watcher.locator(f"tr[data-event='{event_id}'] .chip")
            expect(started).to_have_attribute("data-effect", "started")
        watcher.locator(f"tr[data-event='{approved}'] td:first-child a").click()  # its page
        expect(watcher.locator("#event-runs tr[data-effect=resumed]")).to_have_count(
            1, timeout=WAIT_MS
        )

        # keyboard: dark mode on and off, "g f" to the functions, "?" for the shortcuts
        theme = watcher.evaluate("document.documentElement.dataset.theme")
        watcher.keyboard.press("d")
        other = "light" if theme == "dark" else "dark"
        expect(watcher.locator("html")).to_have_attribute("data-theme", other)
        watcher.keyboard.press("g")
        watcher.keyboard.press("f")
        watcher.wait_for_url(re.compile(r"/functions$"), timeout=WAIT_MS)
        expect(watcher.locator("html")).to_have_attribute("data-theme", other)  # remembered
        watcher.keyboard.press("?")
        expect(watcher.locator("#help")).to_be_visible()
        watcher.close()
        sender.close()


def test_login_and_logout_on_stepline_server(browser: Browser, tmp_path: Path) -> None:
    token = "browser-test-token"
    args = ("--api-token", token, "--event-key", "k")
    with dev_server(tmp_path, *args, command="server") as url:
        page = browser.new_page()
        page.goto(f"{url}/runs")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fruns$"))
        page.fill("#secret", "wrong")
        page.click("#login-form button[type=submit]")
        expect(page.locator(".alert.error")).to_contain_text("Wrong password or token")
        page.fill("#secret", token)
        page.click("#login-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/runs$"), timeout=WAIT_MS)
        expect(page.locator("h1")).to_have_text("Runs")
        page.click("text=Log out")
        expect(page).to_have_url(re.compile(r"/login$"), timeout=WAIT_MS)
        page.goto(f"{url}/functions")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.close()


def test_a_step_opened_while_the_run_page_refreshes_stays_open(
    browser: Browser, tmp_path: Path
) -> None:
    # the run page re-reads its timeline when its live stream connects; a step opened while
    # that read was in flight closed when the timeline was replaced (the open steps were noted
    # before the read, not after it), hiding its buttons under the user's pointer
    with dev_server(tmp_path) as url:
        page = browser.new_page()
        _send(page, url, "order/created", '{"orderId": "o-9", "amount": 5, "customer": "c"}')
        page.goto(f"{url}/runs?function=process-order")
        row = page.locator("tr[data-fn=process-order]")
        expect(row.locator(".status")).to_have_text("completed", timeout=WAIT_MS)
        run_url = f"{url}/runs/{row.get_attribute('data-run')}"

        held: list[Route] = []
        fragment = re.compile(r"/runs/[^/?]+\?fragment=1$")

        def hold(route: Route) -> None:
            held.append(route)

        page.route(fragment, hold)
        with page.expect_request(lambda r: r.url.endswith("?fragment=1"), timeout=WAIT_MS):
            page.goto(run_url)  # the stream connects and the page asks for its timeline again
        step = page.locator("details.tl-step[data-step=charge-card]")
        step.evaluate("d => { d.dataset.before = 'yes'; }")  # the element the read replaces
        step.locator("> summary").click()
        expect(step).to_have_attribute("open", "")
        for _ in range(500):  # a poll with a deadline: Playwright runs the handler meanwhile
            if held:
                break
            page.wait_for_timeout(20)
        assert held, "the timeline read was not held"
        held[0].continue_()
        page.unroute(fragment)
        replaced = page.locator("details.tl-step[data-step=charge-card]:not([data-before])")
        expect(replaced).to_have_count(1, timeout=WAIT_MS)
        expect(replaced).to_have_attribute("open", "")
        expect(replaced.locator(".step-output")).to_be_visible()


COUNT_RUNS_MESSAGES = """
const listen = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (type, handler, ...rest) {
  if (type !== "runs") return listen.call(this, type, handler, ...rest);
  const counted = (e) => { handler(e); window.runsHandled = (window.runsHandled || 0) + 1; };
  return listen.call(this, type, counted, ...rest);
};
"""


def test_a_change_pushed_while_the_run_page_refreshes_is_shown(
    browser: Browser, tmp_path: Path
) -> None:
    # the run page re-reads its timeline when its stream connects; a change pushed while that
    # read was in flight was dropped (one read at a time, and the later one not asked again), so
    # a run that ended meanwhile stayed "sleeping" on its page until a reload
    with dev_server(tmp_path) as url:
        page = browser.new_page()
        page.add_init_script(COUNT_RUNS_MESSAGES)
        _send(page, url, "reminder/scheduled", '{"email": "b@example.com"}')
        page.goto(f"{url}/runs?function=send-reminder")
        row = page.locator("tr[data-fn=send-reminder]")
        expect(row).to_have_attribute("data-status", "SLEEPING", timeout=WAIT_MS)
        run_url = f"{url}/runs/{row.get_attribute('data-run')}"

        held: list[tuple[Route, object]] = []
        fragment = re.compile(r"/runs/[^/?]+\?fragment=1$")

        def hold(route: Route) -> None:
            held.append((route, route.fetch()))  # read now (sleeping), answered later

        page.route(fragment, hold)
        with page.expect_request(lambda r: r.url.endswith("?fragment=1"), timeout=WAIT_MS):
            page.goto(run_url)  # the stream connects and the page asks for its timeline again
        for _ in range(500):  # a poll with a deadline: Playwright runs the handler meanwhile
            if held:
                break
            page.wait_for_timeout(20)
        assert held, "the timeline read was not held"

        other = browser.new_page()  # the run cancelled elsewhere while the read is in flight
        other.goto(run_url)
        other.once("dialog", lambda dialog: dialog.accept())
        other.click("#cancel-run")
        expect(other.locator("h1 .status")).to_have_text("cancelled", timeout=WAIT_MS)
        page.wait_for_function("window.runsHandled >= 1", timeout=WAIT_MS)

        route, stale = held[0]
        route.fulfill(response=stale)  # type: ignore[arg-type]
        page.unroute(fragment)
        expect(page.locator("h1 .status")).to_have_text("cancelled", timeout=WAIT_MS)
        expect(page.locator("#cancel-run")).to_have_count(0)


def test_a_run_pushed_while_the_runs_page_resyncs_stays_listed(
    browser: Browser, tmp_path: Path
) -> None:
    # the runs page reads its rows again when its stream connects and replaces its table with
    # them; a run pushed while that read was in flight was added, then replaced away by the
    # older rows the read brought back
    with dev_server(tmp_path) as url:
        page = browser.new_page()
        page.add_init_script(COUNT_RUNS_MESSAGES)
        runs_url = f"{url}/runs?function=process-order"
        held: list[tuple[Route, object]] = []
        seen: list[str] = []

        def hold(route: Route) -> None:
            seen.append(route.request.url)
            if len(seen) == 1:  # the page itself
                route.continue_()
            else:  # the stream's re-read: read now (no run), answered later
                held.append((route, route.fetch()))

        page.route(runs_url, hold)
        page.goto(runs_url)
        for _ in range(500):  # a poll with a deadline: Playwright runs the handler meanwhile
            if held:
                break
            page.wait_for_timeout(20)
        assert held, "the runs page's re-read was not held"

        sender = browser.new_page()
        _send(sender, url, "order/created", '{"orderId": "o-7", "amount": 7, "customer": "c"}')
        row = page.locator("tr[data-fn=process-order]")
        expect(row).to_have_count(1, timeout=WAIT_MS)  # pushed while the read is held
        page.wait_for_function("window.runsHandled >= 1", timeout=WAIT_MS)

        route, stale = held[0]
        route.fulfill(response=stale)  # type: ignore[arg-type]
        page.unroute(runs_url)
        expect(page.locator("#runs-empty")).to_have_count(0, timeout=WAIT_MS)
        expect(row).to_have_count(1, timeout=WAIT_MS)
        expect(row.locator(".status")).to_have_text("completed", timeout=WAIT_MS)
