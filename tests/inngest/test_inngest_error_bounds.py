"""An SDK's error is kept bounded as an in-process one (``engine/_ops.error_dict``): its message
(and name, code) up to ``MAX_ERROR_MESSAGE_CHARS`` characters saying how many more were cut, its
stack the last ``MAX_ERROR_STACK_CHARS``. Before (review, twentieth stop): an SDK app's step or
function error carrying a whole response body (megabytes) was stored whole in the step's error,
its memo, the run's error and each history row, where an in-process step's was cut (6b30833).
Driven by a scripted SDK (the driver's ``post``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from _stepline_dev import ScriptedSdk, tiny_registration

from stepline import App, Event
from stepline.drivers.inngest import SdkApps
from stepline.engine._ops import MAX_ERROR_MESSAGE_CHARS, MAX_ERROR_STACK_CHARS
from stepline.testing import MockClock, TestEngine

HEADERS = {"X-Inngest-SDK": "scripted:v1", "X-Inngest-Req-Version": "1"}
B = "b" * 40  # the failing step's hashed id
BODY = "<html>" + "x" * 1_000_000
STACK = "at f (app.js:1)\n" * 100_000


def _error(prefix: str) -> dict[str, Any]:
    message = f"{prefix}: 502 Bad Gateway: {BODY}"
    return {"name": "E" * 100_000, "message": message, "stack": STACK, "code": "C" * 100_000}


class FailingSdk(ScriptedSdk):
    """A step that fails for good with a huge error, then the function failing with another."""

    async def reply(self, step: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        memo: dict[str, Any] = orjson.loads(body).get("steps") or {}
        if B not in memo:
            op = {"op": "StepFailed", "id": B, "name": "b", "error": _error("step")}
            return 206, HEADERS, orjson.dumps([op])
        return 500, {**HEADERS, "X-Inngest-No-Retry": "true"}, orjson.dumps(_error("function"))


def _cut(text: str) -> bool:
    return len(text) < MAX_ERROR_MESSAGE_CHARS + 64 and text.endswith(" more characters cut)")


async def test_an_sdk_errors_huge_texts_are_kept_bounded(tmp_path: Path) -> None:
    app = App("stepline-dev")
    async with TestEngine(app, store="sqlite", path=tmp_path / "db", clock=MockClock()) as t:
        await SdkApps(app, FailingSdk()).register(tiny_registration())
        [event_id] = await app.send_async(Event("tiny/a", {}))
        [run] = await app.runs(event_id=event_id)
        ended = await app.wait_for_run(run.run_id, timeout=60)
        history = await t.history(run.run_id)
    assert ended.status == "FAILED" and ended.error is not None
    [step] = ended.steps
    assert step.status == "FAILED" and step.error is not None
    assert step.error["message"].startswith("step: 502 Bad Gateway: <html>xxx")
    for error in (step.error, ended.error):
        assert _cut(error["message"]) and _cut(error["name"])
        assert error["stack"] == STACK[-MAX_ERROR_STACK_CHARS:]
    assert ended.error["message"].startswith("function: 502 Bad Gateway: <html>xxx")
    assert _cut(ended.error["code"])
    # nothing of either body kept whole anywhere in the run's history
    assert history and all(len(orjson.dumps(row.data)) < 100_000 for row in history)
