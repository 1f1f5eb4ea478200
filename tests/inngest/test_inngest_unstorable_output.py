"""A step an SDK ran whose output no store can keep (a lone surrogate: a JS string cut in the
middle of a surrogate pair, which ``JSON.stringify`` writes as ``"\\ud83d"``) fails for good
with a ``SerializationError``, as an in-process step's output that cannot be stored does, and
the SDK is told so in the step's memo. Before, the error was raised out of the pass: the run's
attempt failed, the next request did not have the step in its memo and the SDK ran the step's
body again, once per attempt, until the run failed (review, eighteenth stop). Driven by a
scripted SDK (the driver's ``post``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from _stepline_dev import ScriptedSdk, tiny_registration

from stepline import App, Event
from stepline.drivers.inngest import DISCOVERY, SdkApps
from stepline.testing import MockClock, TestEngine

A = "a" * 40  # the step's hashed id
HEADERS = {"X-Inngest-SDK": "scripted:v1", "X-Inngest-Req-Version": "1"}


class CutStringSdk(ScriptedSdk):
    """Plans step A, runs it (its output: a string cut in the middle of a surrogate pair), and
    ends the run with the memo it is given for A."""

    async def reply(self, step: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        memo: dict[str, Any] = orjson.loads(body).get("steps") or {}
        if step == DISCOVERY and A in memo:
            return 200, HEADERS, orjson.dumps({"memo": memo[A]})
        if step == DISCOVERY:
            return 206, HEADERS, orjson.dumps([{"op": "StepPlanned", "id": A, "name": "a"}])
        op = b'{"op": "StepRun", "id": "%s", "name": "a", "data": "cut \\ud83d"}' % A.encode()
        return 206, HEADERS, b"[" + op + b"]"


async def test_an_sdk_steps_output_no_store_can_keep_fails_the_step_once(tmp_path: Path) -> None:
    app = App("stepline-dev")
    async with TestEngine(app, store="sqlite", path=tmp_path / "db", clock=MockClock()):
        sdk = CutStringSdk()
        await SdkApps(app, sdk).register(tiny_registration())
        [event_id] = await app.send_async(Event("tiny/a", {}))
        [run] = await app.runs(event_id=event_id)
        ended = await app.wait_for_run(run.run_id, timeout=60)
    assert sdk.posted == [DISCOVERY, A, DISCOVERY]  # the step's body ran once
    [step] = ended.steps
    assert (step.id, step.status, step.attempts) == ("a", "FAILED", 1)
    assert step.error is not None and step.error["name"] == "SerializationError"
    assert "lone surrogate" in step.error["message"]
    assert ended.status == "COMPLETED"
    assert ended.output == {"memo": {"error": step.error}}  # what the SDK was told
