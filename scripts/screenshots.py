"""Screenshots of the dashboard's main pages into docs/images/ (shown in the README).

    python scripts/screenshots.py

Starts ``stepline dev`` on the test shop app (a fresh database in a temporary folder), sends
events through the dashboard's own form, waits for the runs to settle, and captures the runs
list, a run's timeline, the functions, the event stream and the send form, light and dark, with
Debian's headless Chromium (``STEPLINE_CHROMIUM``, default /usr/bin/chromium-headless-shell)
driven by Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
sys.path.insert(1, str(ROOT / "tests"))  # _devserver starts stepline dev through forkserver

from _devserver import CHROMIUM, dev_server  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

OUT = ROOT / "docs" / "images"
EVENTS = [
    ("order/created", '{"orderId": "o-1001", "amount": 120, "customer": "c-7", "items": 3}'),
    ("order/created", '{"orderId": "o-1002", "amount": 49, "customer": "c-9", "items": 1}'),
    ("reminder/scheduled", '{"email": "ada@example.com"}'),
    ("expense/submitted", '{"expenseId": "e-77", "amount": 310}'),
    ("inventory/sync", '{"warehouse": "north"}'),
    ("order/created", '{"orderId": "o-1003", "amount": 18, "customer": "c-7", "items": 2}'),
]


def send(page: Page, url: str, name: str, data: str) -> None:
    page.goto(f"{url}/send")
    page.fill("#event-name", name)
    page.fill("#event-data", data)
    page.click("#send-button")
    page.wait_for_selector("#send-result:has-text('Sent')")


def shoot(page: Page, name: str) -> None:
    page.wait_for_timeout(300)  # real time: let the live connection settle before capturing
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
    print("wrote", (OUT / f"{name}.png").relative_to(ROOT))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        dev_server(Path(tmp)) as url,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(url)
        page.evaluate("localStorage.setItem('stepline-theme', 'light')")
        for name, data in EVENTS:
            send(page, url, name, data)
        page.goto(f"{url}/runs?status=FAILED")
        page.wait_for_selector("tr[data-status=FAILED]")
        page.goto(f"{url}/runs")
        page.wait_for_selector("tr[data-status=SLEEPING]")
        page.wait_for_selector("tr[data-status=WAITING]")
        shoot(page, "runs")
        page.click("tr[data-fn=process-order] a.mono")
        page.wait_for_selector(".tl-step")
        for step in page.query_selector_all("details.tl-step"):
            step.evaluate("d => d.open = true")
        shoot(page, "run")
        page.goto(f"{url}/runs?function=sync-inventory")
        page.click("tr[data-fn=sync-inventory] a.mono")
        page.click("details.tl-step[data-step=push-rows] > summary")
        shoot(page, "run-failed")
        page.goto(f"{url}/functions")
        shoot(page, "functions")
        page.goto(f"{url}/events")
        shoot(page, "events")
        page.goto(f"{url}/send?function=process-order")
        shoot(page, "send")
        page.evaluate("localStorage.setItem('stepline-theme', 'dark')")
        page.goto(f"{url}/runs")
        shoot(page, "runs-dark")
        browser.close()


if __name__ == "__main__":
    main()
