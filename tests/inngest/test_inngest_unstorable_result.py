"""What an SDK hands back that no store can keep fails where it belongs, at once, as in process:
a function result with a lone surrogate (a JS string cut in the middle of a surrogate pair,
which ``JSON.stringify`` writes as ``"\\ud83d"``) or over the step output limit fails the run
for good (``SerializationError`` / ``LimitExceededError``, as an in-process function's result),
and invoke data that cannot be an event fails the invoke step (the SDK is told in its memo and
the function may catch it). Before (lead, nineteenth stop; review R3 of the eighteenth): the
error was raised out of the pass, the run's attempt failed and the SDK was called again, once
per attempt (its function body re-run each time), until the run failed; an oversize result
was stored as it was. Driven by a scripted SDK (the driver's ``post``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from _stepline_dev import ScriptedSdk, tiny_registration

from stepline import App, Event, Limits
from stepline.drivers.inngest import DISCOVERY, SdkApps
from stepline.testing import MockClock, TestEngine

HEADERS = {"X-Inngest-SDK": "scripted:v1", "X-Inngest-Req-Version": "1"}
CUT = b'"cut \\ud83d"'  # JSON for a string ending in a lone surrogate
B = "b" * 40  # the invoke step's hashed id


class ResultSdk(ScriptedSdk):
    """Answers every request of a run with ``reply``: a result (200), or an invoke of
    ``tiny-a`` with ``invoke_data`` and then the memo it is given for it."""

    def __init__(self, result: bytes | None = None, invoke_data: bytes | None = None) -> None:
        super().__init__()
        self.result, self.invoke_data = result, invoke_data

    async def reply(self, step: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.result is not None:
            return 200, HEADERS, self.result
        memo: dict[str, Any] = orjson.loads(body).get("steps") or {}
        if B in memo:
            return 200, HEADERS, orjson.dumps({"memo": memo[B]})
        opts = b'{"function_id": "tiny-a", "payload": {"data": %s}}' % self.invoke_data
        op = b'{"op": "InvokeFunction", "id": "%s", "name": "b", "opts": %s}' % (B.encode(), opts)
        return 206, HEADERS, b"[" + op + b"]"


async def _ended(tmp_path: Path, sdk: ResultSdk, app: App) -> Any:
    async with TestEngine(app, store="sqlite", path=tmp_path / "db", clock=MockClock()):
        await SdkApps(app, sdk).register(tiny_registration())
        [event_id] = await app.send_async(Event("tiny/a", {}))
        [run] = await app.runs(event_id=event_id)
        return await app.wait_for_run(run.run_id, timeout=60)


@pytest.mark.parametrize(
    ("result", "error_name", "said"),
    [
        (b'{"text": ' + CUT + b"}", "SerializationError", "lone surrogate"),
        (orjson.dumps({"text": "x" * 2_000}), "LimitExceededError", "over the limit of 1024"),
    ],
    ids=["surrogate", "oversize"],
)
async def test_an_sdk_result_no_store_can_keep_fails_the_run_at_once(
    tmp_path: Path, result: bytes, error_name: str, said: str
) -> None:
    sdk = ResultSdk(result=result)
    ended = await _ended(
        tmp_path, sdk, App("stepline-dev", limits=Limits(max_step_output_bytes=1024))
    )
    assert sdk.posted == [DISCOVERY]  # the function's body ran once
    assert ended.status == "FAILED"
    assert ended.error["name"] == error_name and said in ended.error["message"]


async def test_invoke_data_that_cannot_be_an_event_fails_the_invoke_step(tmp_path: Path) -> None:
    sdk = ResultSdk(invoke_data=b'{"text": ' + CUT + b"}")
    ended = await _ended(tmp_path, sdk, App("stepline-dev"))
    assert sdk.posted == [DISCOVERY, DISCOVERY]  # asked again with the step's error in its memo
    [step] = ended.steps
    assert (step.id, step.status, step.attempts) == ("b", "FAILED", 1)
    assert step.error is not None and "lone surrogate" in step.error["message"]
    assert ended.status == "COMPLETED"
    assert ended.output == {"memo": {"error": step.error}}
