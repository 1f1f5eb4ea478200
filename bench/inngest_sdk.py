"""An Inngest SDK app driven over loopback HTTP (issue 10): ``python -m bench.inngest_sdk
[--quick]`` (or ``python -m bench --only inngest_sdk``).

This process runs a Stepline app (SQLite WAL + ``synchronous=FULL`` in a temporary folder, the
real clock, a worker, the HTTP server on 127.0.0.1 in dev mode); a second process runs a FastAPI
app on the official Python SDK (``inngest`` on PyPI, uvicorn, one worker), synced by ``PUT``.
The HTTP driver is wrapped to time and count its execution requests. Rows:

- per step: a function of ``STEPS`` sequential ``step.run`` with empty bodies, run one at a time;
  wall time from the event's send to the run's completion, divided by the steps (it includes the
  SDK's own work: parsing the request, replaying the memo, hashing ids, serializing the reply);
  requests per step (a step's request runs it and replies ``StepRun``; one more request ends
  the run); where the time goes: the p50 time inside a POST (loopback HTTP and the SDK) and
  between a reply and the next POST (Stepline's share: the reply's commit, the next request),
  and the CPU time per step of this process and of the SDK app's (``/proc/PID/stat``); the run
  is not read from the store while it is driven (its end is its 200 reply);
- event → first request: one event at a time on an idle server, from just before ``send`` to
  the driver starting the run's first request (both in this process, ``time.perf_counter``);
- parallel steps: one group of ``PARALLEL`` ``step.run`` (wait mode): the requests made (one
  discovery planning them all, one targeted request each, all in flight at once, then one
  coalesced discovery ending the run) and the wall time.

Prints one JSON object (the figures and the load average before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import Sizes, median, percentile
from bench.pg_procs import cpu_seconds

STEPS = 50
PARALLEL = 10
SDK_APP = """
import os

import fastapi
import inngest
import inngest.fast_api
import uvicorn

client = inngest.Inngest(
    app_id="bench-sdk",
    is_production=False,
    api_base_url=os.environ["BASE_URL"],
    event_api_base_url=os.environ["BASE_URL"],
)


@client.create_function(fn_id="noop", trigger=inngest.TriggerEvent(event="bench/noop"))
async def noop(ctx: inngest.Context) -> int:
    return 1


@client.create_function(fn_id="chain", trigger=inngest.TriggerEvent(event="bench/chain"))
async def chain(ctx: inngest.Context) -> int:
    async def body() -> int:
        return 1

    total = 0
    for i in range(int(ctx.event.data["steps"])):
        total += await ctx.step.run(f"s{i}", body)
    return total


@client.create_function(fn_id="fan", trigger=inngest.TriggerEvent(event="bench/fan"))
async def fan(ctx: inngest.Context) -> int:
    async def body() -> int:
        return 1

    n = int(ctx.event.data["n"])
    out = await ctx.group.parallel(
        tuple((lambda i=i: ctx.step.run(f"p{i}", body)) for i in range(n))
    )
    return sum(out)


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [noop, chain, fan])
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _measure(quick: bool) -> dict[str, Any]:
    import httpx

    from stepline import App, Event
    from stepline.drivers.inngest import InngestDriver, SdkApps
    from stepline.server import create_app
    from stepline.server.serve import HttpServer
    from stepline.server.settings import ServerSettings

    class TimingDriver(InngestDriver):
        def __init__(self) -> None:
            super().__init__()
            self.posts: list[tuple[str, float]] = []  # (run id, perf_counter at send)
            self.replies: dict[str, float] = {}  # run id -> perf_counter at its last reply
            self.spans: dict[str, list[tuple[float, float]]] = {}  # run id -> (send, reply)
            self.ended: set[str] = set()  # runs whose last request was answered with a 200

        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str]
        ) -> tuple[int, dict[str, str], bytes]:
            run_id, sent = headers["X-Run-ID"], time.perf_counter()
            self.posts.append((run_id, sent))
            reply = await super().post(url, body, headers)
            self.replies[run_id] = time.perf_counter()
            if reply[0] == 200:  # the run's end (its commit follows)
                self.ended.add(run_id)
            self.spans.setdefault(run_id, []).append((sent, self.replies[run_id]))
            return reply

    runs = 3 if quick else 10
    samples = 10 if quick else 50
    with tempfile.TemporaryDirectory(prefix="bench-inngest-", dir=Path.cwd()) as tmp:
        app = App("bench-inngest", db=f"sqlite:///{tmp}/stepline.db")
        driver = TimingDriver()
        apps = SdkApps(app, driver)
        server = HttpServer(create_app(app, ServerSettings(dev=True)), "127.0.0.1", 0)
        serving = asyncio.create_task(server.run())
        worker = app.make_worker()
        working = asyncio.create_task(worker.run())
        port = _free_port()
        script = Path(tmp) / "sdk_app.py"
        script.write_text(SDK_APP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        env.update(PORT=str(port), BASE_URL=server.url)
        process = await asyncio.to_thread(subprocess.Popen, [sys.executable, str(script)], env=env)
        serve_url = f"http://127.0.0.1:{port}/api/inngest"
        try:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient() as client:
                while True:
                    try:
                        await client.get(serve_url)
                        break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.05)
            assert await apps.sync(serve_url) == 200

            async def run(event: Event) -> tuple[str, float, float]:
                """Run id, time sent, time of the run's last reply (its 200)."""
                t0 = time.perf_counter()
                [outcome] = await app.send_with_outcomes(event)
                [run_id] = outcome.run_ids
                while run_id not in driver.ended and time.perf_counter() - t0 < 60:
                    # no store reads while the run is driven (they take CPU from it)
                    await asyncio.sleep(0.005)
                while True:  # a run's end is timed by its last reply; then its commit is read
                    done = await app.get_run(run_id)
                    if done is not None and done.done:
                        assert done.status == "COMPLETED", done.error
                        return run_id, t0, driver.replies[run_id]
                    await asyncio.sleep(0.002)

            await run(Event("bench/chain", {"steps": 3}))  # warm up both sides
            per_step, requests_per_step = [], []
            inside, between = [], []  # ms: in a POST; from a reply to the next POST
            cpu0 = cpu_seconds(os.getpid()), cpu_seconds(process.pid)
            for _ in range(runs):
                run_id, t0, t1 = await run(Event("bench/chain", {"steps": STEPS}))
                per_step.append((t1 - t0) / STEPS * 1000)
                requests = sum(1 for r, _ in driver.posts if r == run_id)
                requests_per_step.append(requests / STEPS)
                spans = driver.spans[run_id]
                inside += [(end - start) * 1000 for start, end in spans]
                between += [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(spans)]
            cpu1 = cpu_seconds(os.getpid()), cpu_seconds(process.pid)
            ours, sdk = ((b - a) * 1000 / (runs * STEPS) for a, b in zip(cpu0, cpu1, strict=True))
            first: list[float] = []
            for _ in range(samples):
                run_id, t0, _ = await run(Event("bench/noop", {}))
                sent = min(t for r, t in driver.posts if r == run_id)
                first.append((sent - t0) * 1000)
            run_id, t0, t1 = await run(Event("bench/fan", {"n": PARALLEL}))
            fan_requests = sum(1 for r, _ in driver.posts if r == run_id)
            return {
                "steps_per_run": STEPS,
                "runs": runs,
                "per_step_ms_p50": round(median(per_step), 3),
                "per_step_ms_max": round(max(per_step), 3),
                "requests_per_step": round(median(requests_per_step), 3),
                "inside_post_ms_p50": round(median(inside), 3),
                "between_posts_ms_p50": round(median(between), 3),
                "cpu_ms_per_step_stepline": round(ours, 3),
                "cpu_ms_per_step_sdk_app": round(sdk, 3),
                "event_to_first_request_ms_p50": round(median(first), 3),
                "event_to_first_request_ms_p99": round(percentile(first, 99), 3),
                "parallel_steps": PARALLEL,
                "parallel_requests": fan_requests,
                "parallel_wall_ms": round((t1 - t0) * 1000, 3),
            }
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 10)
            worker.stop()
            await working
            server.stop()
            await serving
            await driver.aclose()
            app.close()


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """The figures for ``python -m bench --only inngest_sdk`` (``--quick``: fewer runs)."""
    figures = asyncio.run(_measure(sizes == Sizes.quick()))
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": "n/a: DBOS does not speak the Inngest SDK protocol"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and samples")
    args = parser.parse_args()
    before = os.getloadavg()
    figures = asyncio.run(_measure(args.quick))
    figures["loadavg_before"] = [round(x, 2) for x in before]
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
