"""The event API over loopback (issue 9): events accepted per second on ``POST /e/{key}`` and
event-to-first-step latency through HTTP.

A ``stepline server`` process (its defaults: SQLite WAL + ``synchronous=FULL``, a worker, uvicorn
on 127.0.0.1) serves a small app; this process is the client: 64 keep-alive connections (a
minimal HTTP/1.1 client on asyncio streams, so the client costs little next to the server), each
sending requests back to back for a fixed count. Rows:

- batch 1: one 1 KB event per request; events/s = requests/s; p50/p99 of the request latency
  (each acknowledged only after its commit: the concurrent requests share transactions, hence
  fsyncs, through the engine's group-commit writer);
- batch 100: a list of 100 such events per request; events/s and request latency;
- event → first step through HTTP: one event at a time on an idle server, from just before the
  request is written to the first step's body starting (``time.perf_counter()`` in the server
  process: CLOCK_MONOTONIC, the same clock in both processes on Linux), read back from the step's
  output through the REST API.

The load events have a name no function listens to (the event API's own cost: validation,
planning, the durable commit); the latency event starts a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, median, percentile, stepline_db

CLIENTS = 64
EVENT_BYTES = 1024
KEY = "bench-key"
APP = """
import time

from stepline import App, TriggerEvent

app = App("bench-http")


def mark() -> float:
    return time.perf_counter()


@app.function(id="first-step", trigger=TriggerEvent("bench/http.latency"))
async def first_step(ctx) -> float:
    return await ctx.step.run("first", mark)
"""
DBOS_NA = "n/a: DBOS has no HTTP event API"


def _event(i: int) -> dict[str, Any]:
    event: dict[str, Any] = {"name": "bench/http.load", "data": {"i": i, "pad": ""}}
    size = len(json.dumps(event))
    event["data"]["pad"] = "x" * max(0, EVENT_BYTES - size)
    return event


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _client(port: int, request: bytes, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"POST /e/ answered {status}: {body[:200]!r}")
    finally:
        writer.close()


async def _load(port: int, batch: int, requests_per_client: int) -> dict[str, Any]:
    events = [_event(i) for i in range(batch)]
    body = json.dumps(events[0] if batch == 1 else events).encode()
    request = _request(f"/e/{KEY}", body)
    warm: list[float] = []
    await asyncio.gather(*(_client(port, request, 3, warm) for _ in range(CLIENTS)))
    latencies: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(
        *(_client(port, request, requests_per_client, latencies) for _ in range(CLIENTS))
    )
    took = time.perf_counter() - t0
    requests = CLIENTS * requests_per_client
    return {
        "events_per_s": requests * batch / took,
        "requests_per_s": requests / took,
        "p50_ms": median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": requests,
        "events": requests * batch,
        "body_bytes": len(body),
    }


async def _get_json(port: int, path: str) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, body = await _read_response(reader)
    finally:
        writer.close()
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
    return json.loads(body)


async def _first_step(port: int, samples: int, warmup: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    found: list[float] = []
    try:
        for k in range(warmup + samples):
            await asyncio.sleep(0.01)  # the server idles between samples
            body = json.dumps({"name": "bench/http.latency", "data": {"k": k}}).encode()
            t0 = time.perf_counter()
            writer.write(_request(f"/e/{KEY}", body))
            status, answer = await _read_response(reader)
            if status != 200:
                raise RuntimeError(f"POST /e/ answered {status}: {answer[:200]!r}")
            [event_id] = json.loads(answer)["ids"]
            deadline = time.monotonic() + 30
            while True:
                runs = (await _get_json(port, f"/api/v1/runs?event={event_id}"))["data"]
                if runs and runs[0]["status"] == "COMPLETED":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the run of event {event_id} did not complete")
                await asyncio.sleep(0.002)
            if k >= warmup:
                found.append(runs[0]["output"] - t0)
    finally:
        writer.close()
    return {
        "first_step_p50_ms": median(found) * 1000,
        "first_step_p99_ms": percentile(found, 99) * 1000,
        "first_step_samples": len(found),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    (workdir / "bench_http_app.py").write_text(APP)
    log = workdir / "http-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir), env.get("PYTHONPATH")]))
    port = _free_port()
    argv = [sys.executable, "-m", "stepline.cli", "server", "bench_http_app:app"]
    argv += ["--db", stepline_db(workdir, "http"), "--port", str(port), "--log-level", "WARNING"]
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=sink, stderr=sink)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return process, port
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"stepline server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


async def _measure(port: int, sizes: Sizes) -> dict[str, Any]:
    quick = sizes.latency_samples < 200
    single = await _load(port, 1, 50 if quick else 200)
    batched = await _load(port, 100, 5 if quick else 20)
    latency = await _first_step(port, sizes.latency_samples, sizes.latency_warmup)
    figures = {f"single_{k}": v for k, v in single.items()}
    figures.update({f"batch_{k}": v for k, v in batched.items()})
    figures.update(latency)
    return figures


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    process, port = _start_server(workdir)
    try:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        figures = runner(_measure(port, sizes))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    figures["clients"] = CLIENTS
    figures["event_bytes"] = EVENT_BYTES
    return figures


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return {"na": DBOS_NA}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as scratch:
        quick = "--quick" in sys.argv
        result = run_stepline(Path(scratch), Sizes.quick() if quick else Sizes.full())
    print(json.dumps(result, indent=2))
