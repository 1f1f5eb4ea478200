"""What the official Python SDK's functions do on Stepline (``py_scenario_app.py``, async on
FastAPI, and its twin ``py_flask_scenario_app.py``, sync on Flask), driven over HTTP on a clock
that moves only when told to: RetryAfterError honoured to within a second, NonRetriableError
not retried, a step error caught and replaced, invoke by object and by id, an invoke failing and
one timing out, waits fulfilled and timed out (an ``if`` and a name that do not match), cancel
with ``if``, debounce, singleton skip and cancel, several triggers, on_failure with Inngest's
payload, an unserializable output, and 500 events sent at once by the SDK's client.

issue 10, "What it must show": the same in Python with the official ``inngest`` PyPI SDK.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from _stepline_dev import Dev, stepline_dev

from conftest import SdkApp
from stepline import App, Event
from stepline._tls import tls_context
from stepline.sdk.run import Run
from stepline.store import Store

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.parametrize("kind", ["py", "pyflask"]),  # FastAPI async, Flask sync
]


SCRIPTS = {"py": "py_scenario_app.py", "pyflask": "py_flask_scenario_app.py"}
SEND_500 = """
import asyncio, json, sys
import inngest

client = inngest.Inngest(
    app_id="sender", is_production=False, event_key="test-event-key", event_api_base_url=sys.argv[1]
)


async def main() -> None:
    # at most 100 in flight, as the SDK's client (httpx's default pool: 100 connections) sends
    # them anyway: the other 400 queued inside its pool cost the sender ~6 s of CPU (14 ms a
    # send, 1.8 s in all with them queued here) and, past its 5 s pool timeout, retries
    gate = asyncio.Semaphore(100)

    async def send(i: int) -> list[str]:
        async with gate:
            return await client.send(inngest.Event(name="sc/many", data={"i": i}))

    sends = (send(i) for i in range(500))
    print(json.dumps([i for ids in await asyncio.gather(*sends) for i in ids]))


asyncio.run(main())
"""


@asynccontextmanager
async def _dev(
    tmp_path: Path, start_app: Callable[..., SdkApp], kind: str, store: str | Store
) -> AsyncIterator[Dev]:
    async with stepline_dev(
        tmp_path, start_app, kind, App("stepline-dev"), script=SCRIPTS[kind], store=store
    ) as d:
        yield d


async def _calls(d: Dev, name: str) -> list[Any]:
    base = d.sdk.serve_url.removesuffix("/api/inngest")
    async with httpx.AsyncClient(verify=tls_context()) as client:
        found: list[Any] = (await client.get(f"{base}/calls/{name}")).json()
    return found


async def _pending(d: Dev, run_id: str, step: str) -> Run:
    """The run once its step ``step`` is pending (a sleep, a wait, an invoke)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        run = await d.t.app.get_run(run_id)
        assert run is not None
        if any(s.id == step and s.status == "PENDING" for s in run.steps):
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id}: step {step} never pending ({run.status})")
        await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it


async def test_retry_after_is_honoured_and_non_retriable_is_not_retried(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    async with _dev(tmp_path, start_app, kind, sdk_store) as d:
        before = time.time()
        run_id = await d.run_of("sc-retry-after", Event("sc/retry", {}))
        await d.until_status(run_id, "RETRYING")
        after = time.time()
        engine = d.t.app.engine
        history = await engine.read(engine.store.get_history, run_id)
        [retry_at] = [h.data["retry_at"] for h in history if "retry_at" in (h.data or {})]
        # RetryAfterError(30 s): the retry is due 30 s after the SDK's reply, within a second
        assert before + 29 <= retry_at <= after + 31
        d.clock.set(retry_at - 1)
        await d.t.tick()
        assert len(await _calls(d, "retry-after")) == 1  # not before its time
        d.clock.set(retry_at + 0.01)
        await d.t.tick()
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", "ok")
        assert len(await _calls(d, "retry-after")) == 2

        never = await d.run_of("sc-non-retriable", Event("sc/never", {}))
        run = await d.until_status(never, "COMPLETED", "FAILED")
        assert run.status == "FAILED" and "no point retrying" in str(run.error)
        assert len(await _calls(d, "never")) == 1  # retries=3, yet one attempt

        caught = await d.run_of("sc-caught", Event("sc/caught", {}))
        await d.until_status(caught, "RETRYING")  # retries=1: the step fails twice
        d.clock.advance(3600)
        await d.t.tick()
        run = await d.until_status(caught, "COMPLETED", "FAILED")
        assert (run.status, run.output) == (
            "COMPLETED",
            {"caught": "primary down", "result": "secondary"},
        )
        assert len(await _calls(d, "boom")) == 2


async def test_invokes_by_object_and_id_a_failing_one_and_one_timing_out(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    async with _dev(tmp_path, start_app, kind, sdk_store) as d:
        run_id = await d.run_of("sc-invoker", Event("sc/invoke", {}))
        await _pending(d, run_id, "times-out")
        d.clock.advance(6)  # past the invoke's 5 s timeout
        await d.t.tick()
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == (
            "COMPLETED",
            {
                "by_object": {"doubled": 4},
                "by_id": {"doubled": 6},
                "failed": "the child refuses",
                "timed_out": "InngestInvokeTimeoutError",
            },
        )
        [slow] = await d.t.runs(function_id=d.sdk.slug("sc-slow"))
        # the invoked run goes on without its caller (its first pass may still be running)
        slow = await d.until_status(slow.run_id, "SLEEPING", "COMPLETED", "FAILED", "CANCELLED")
        assert slow.status == "SLEEPING"


async def test_waits_fulfilled_and_timed_out(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    async with _dev(tmp_path, start_app, kind, sdk_store) as d:
        run_id = await d.run_of("sc-waiter", Event("sc/wait", {"k": 1}))
        await _pending(d, run_id, "fulfilled")
        await d.t.send(Event("sc/go", {"k": 2}))  # the `if` does not match
        await d.t.send(Event("sc/other", {"k": 1}))  # the name does not match
        await _pending(d, run_id, "fulfilled")
        await d.t.send(Event("sc/go", {"k": 1, "hit": True}))
        await _pending(d, run_id, "missed")
        await d.t.send(Event("sc/go", {"k": 2}))
        await d.t.send(Event("sc/other", {"k": 1}))
        d.clock.advance(11)  # past the second wait's 10 s
        await d.t.tick()
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == (
            "COMPLETED",
            {"hit": {"k": 1, "hit": True}, "missed": None},
        )


async def test_cancel_with_if_debounce_and_singletons(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    async with _dev(tmp_path, start_app, kind, sdk_store) as d:
        one = await d.run_of("sc-cancellable", Event("sc/start", {"id": 1}))
        two = await d.run_of("sc-cancellable", Event("sc/start", {"id": 2}))
        await d.until_status(one, "SLEEPING")
        await d.until_status(two, "SLEEPING")
        await d.t.send(Event("sc/stop", {"id": 1}))
        await d.until_status(one, "CANCELLED")
        assert (await d.until_status(two, "SLEEPING")).status == "SLEEPING"

        for doc, rev in [("a", 1), ("a", 2), ("b", 1), ("a", 3)]:
            await d.t.send(Event("sc/edit", {"doc": doc, "rev": rev}))
        assert await d.t.runs(function_id=d.sdk.slug("sc-debounced")) == []
        d.clock.advance(6)  # the debounce period passed without another edit
        await d.t.tick()
        runs = await d.t.runs(function_id=d.sdk.slug("sc-debounced"))
        ended = [await d.until_status(r.run_id, "COMPLETED", "FAILED") for r in runs]
        assert sorted(r.output for r in ended) == [1, 3]  # b's only edit, a's last

        first = await d.run_of("sc-single-skip", Event("sc/skip", {"user": "u", "n": 1}))
        await d.until_status(first, "SLEEPING")
        await d.t.send(Event("sc/skip", {"user": "u", "n": 2}))  # skipped: one is running
        assert [r.run_id for r in await d.t.runs(function_id=d.sdk.slug("sc-single-skip"))] == [
            first
        ]

        old = await d.run_of("sc-single-cancel", Event("sc/replace", {"user": "u", "n": 1}))
        await d.until_status(old, "SLEEPING")
        new = await d.run_of("sc-single-cancel", Event("sc/replace", {"user": "u", "n": 2}))
        await d.until_status(old, "CANCELLED")  # the new one replaces it
        await d.until_status(new, "SLEEPING")


async def test_triggers_on_failure_unserializable_output_and_500_sends(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], sdk_store: str | Store
) -> None:
    async with _dev(tmp_path, start_app, kind, sdk_store) as d:
        x = await d.run_of("sc-multi", Event("sc/x", {}))
        y = await d.run_of("sc-multi", Event("sc/y", {}))
        outputs = [(await d.until_status(r, "COMPLETED", "FAILED")).output for r in (x, y)]
        assert outputs == ["sc/x", "sc/y"]

        broken = await d.run_of("sc-broken", Event("sc/broken", {"order": 7}))
        assert (await d.until_status(broken, "COMPLETED", "FAILED")).status == "FAILED"
        handler = d.sdk.slug("sc-broken-failure")

        async def handled() -> list[Run]:
            return await d.t.runs(function_id=handler)

        deadline = asyncio.get_running_loop().time() + 60
        while not (found := await handled()):
            assert asyncio.get_running_loop().time() < deadline, "no on_failure run"
            await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it
        failure = await d.until_status(found[0].run_id, "COMPLETED", "FAILED")
        assert failure.output == {
            "event": "inngest/function.failed",
            "message": "broken on purpose",
            "original": {"order": 7},
            "function_id": d.sdk.slug("sc-broken"),
            "run_id": broken,
        }

        odd = await d.run_of("sc-unserializable", Event("sc/unserializable", {}))
        run = await d.until_status(odd, "COMPLETED", "FAILED")
        assert run.status == "FAILED" and run.error is not None, run

        if kind != "py":
            return  # the sends below are the SDK's client alone, whatever app is synced: once
        # the SDK's client in a process of its own (it leaves its connections open)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", SEND_500, d.url],
            capture_output=True,
            check=True,
            timeout=120,
        )
        ids = json.loads(done.stdout)
        assert len(set(ids)) == 500
        stored = await d.t.app.events(name="sc/many", limit=1000)
        assert sorted(e.event.data["i"] for e in stored) == list(range(500))
