"""Dashboard: how fast its pages answer over many runs, and a run page with 1,000 steps.

    python -m bench.dashboard --runs 100000           # the issue's row: --runs 1000000
    python -m bench.dashboard --runs 20000 --json /tmp/dashboard.json

1. **Fill**: ``runs`` runs of one function (``bench/order``, data ``{"n": i % 1000}``), sent in
   batches of 1,000 with no worker (they stay QUEUED: listing and searching read the same rows
   whatever their status), then 200 of them executed to COMPLETED and one run of 1,000 steps.
2. **Pages** over the ASGI app in-process (server time, no network), 20 requests each after a
   warm-up: the runs list (``/runs``), filtered by function, by status COMPLETED (rare among
   the rows), by waiting-on kind (with a filter the page counts up to 1,000 matching runs for the
   bulk actions), a payload search (``event.data.n == 7``: it scans the newest 2,000 runs), and
   the 1,000-step run's page (its first 50 steps' details inline, the others loaded when
   opened). p50 and p95 in ms.
3. **Browser**: Debian's Chromium (Playwright) loads the 1,000-step run page from a real
   uvicorn server: ms from navigation to the ``load`` event, median of 5.

Targets (issue 9): runs list and payload search p95 <= 200 ms over 1,000,000 runs; the
1,000-step run page renders in <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from bench.common import median, percentile
from stepline import App, Context, Event, TriggerEvent
from stepline.server.dashboard import dashboard_routes
from stepline.server.settings import ServerSettings

# the browser the dashboard tests use (tests/dashboard/_devserver.py; scripts/setup installs it)
CHROMIUM = os.environ.get("STEPLINE_CHROMIUM", "/usr/bin/chromium-headless-shell")
SAMPLES = 20


def make_app(db: Path) -> App:
    app = App("bench-dashboard", db=str(db))

    @app.function(id="order", trigger=TriggerEvent("bench/order"))
    async def order(ctx: Context) -> Any:
        return await ctx.step.run("charge", lambda: {"n": ctx.event.data["n"]})

    @app.function(id="many", trigger=TriggerEvent("bench/many"))
    async def many(ctx: Context) -> int:
        for i in range(1000):
            await ctx.step.run(f"step-{i}", lambda i=i: {"i": i, "note": "x" * 32})
        return 1000

    return app


async def fill(app: App, runs: int) -> str:
    started = time.perf_counter()
    for first in range(0, runs, 1000):
        size = min(1000, runs - first)
        await app.send_async([Event("bench/order", {"n": (first + i) % 1000}) for i in range(size)])
    print(f"filled {runs} runs in {time.perf_counter() - started:.1f} s", flush=True)
    async with app.worker(concurrency=100):
        [event_id] = await app.send_async(Event("bench/many", {}))
        [big] = await app.runs(event_id=event_id)
        await app.wait_for_run(big.run_id, timeout=600)
        done = 0
        while done < 200:
            done = len(await app.runs(status="COMPLETED", limit=201, with_steps=False))
            await asyncio.sleep(0.1)  # real time: poll the worker's progress
    return big.run_id


async def time_pages(app: App, big_run: str) -> dict[str, dict[str, float]]:
    server = Starlette(routes=dashboard_routes(app, ServerSettings(dev=True)))
    transport = httpx.ASGITransport(app=server)
    pages = {
        "runs list": "/runs",
        "runs list, by function": "/runs?function=order",
        "runs list, status COMPLETED": "/runs?status=COMPLETED",
        "runs list, waiting on: queued": "/runs?waiting=queued",
        "payload search (scans 2,000)": "/runs?q=event.data.n%20%3D%3D%207",
        "run page, 1,000 steps": f"/runs/{big_run}",
    }
    found: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for name, path in pages.items():
            (await client.get(path)).raise_for_status()  # warm-up
            samples = []
            for _ in range(SAMPLES):
                began = time.perf_counter()
                response = await client.get(path)
                samples.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
            found[name] = {
                "p50_ms": percentile(samples, 50),
                "p95_ms": percentile(samples, 95),
                "bytes": len(response.content),
            }
            p50, p95 = found[name]["p50_ms"], found[name]["p95_ms"]
            print(f"{name:34} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    return found


async def time_browser(app: App, big_run: str, chromium: bool) -> float | None:
    if not chromium:
        return None
    from playwright.async_api import async_playwright

    from stepline.server import HttpServer, create_app

    http = HttpServer(create_app(app, ServerSettings(dev=True)), "127.0.0.1", 0)
    serving = asyncio.create_task(http.run())
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = await browser.new_page()
            loads = []
            for _ in range(6):
                began = time.perf_counter()
                await page.goto(f"{http.url}/runs/{big_run}", wait_until="load")
                loads.append((time.perf_counter() - began) * 1000)
            await browser.close()
        return median(loads[1:])
    finally:
        http.stop()
        await serving


async def main_async(runs: int, where: Path, chromium: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        app = make_app(Path(tmp) / "dashboard.db")
        try:
            big_run = await fill(app, runs)
            pages = await time_pages(app, big_run)
            browser = await time_browser(app, big_run, chromium)
            if browser is not None:
                print(f"{'run page, 1,000 steps, Chromium load':34} median {browser:7.1f} ms")
            return {"runs": runs, "pages": pages, "browser_load_ms": browser}
        finally:
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    where = Path(__file__).resolve().parent.parent
    result = asyncio.run(main_async(args.runs, where, Path(CHROMIUM).exists()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
