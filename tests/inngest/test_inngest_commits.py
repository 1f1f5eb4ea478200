"""The commits of an HTTP pass are never lost to a request that fails: a reply's commit is
written behind the commits before it without waiting, and the requests sent after it wait for
it; when another request of the pass fails and the pass cancels its requests in flight, the
commits they wait for are still written (the steps the SDK ran stay in the memo, not run
again on the retry). Driven by a scripted SDK (the driver's ``post``) against a held writer."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from _stepline_dev import ScriptedSdk, tiny_registration

from stepline import App, Event
from stepline.drivers.inngest import DISCOVERY, SdkApps
from stepline.drivers.inngest._driver import SdkRequestError
from stepline.drivers.inngest._requests import PassRequests
from stepline.engine.engine import Engine
from stepline.testing import MockClock, TestEngine

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)  # hashed step ids


def _ops(*ops: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 206, {"X-Inngest-SDK": "scripted:v1", "X-Inngest-Req-Version": "1"}, orjson.dumps(ops)


class OrderedSdk(ScriptedSdk):
    """One parallel group (steps A, B, C): A's reply holds the writer, so its commit waits;
    B replies once A's reply was handled (its commit goes behind A's) and plans D (sent after
    B's commit); C's request fails once D was sent. The writer is released once the pass
    cancelled D's request."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.gate = threading.Event()
        self.held: asyncio.Future[Any] | None = None
        self.commits = 0
        self.committed = asyncio.Event()  # a reply's commit was started
        self.d_sent = asyncio.Event()

    async def reply(self, step: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if step == DISCOVERY:
            return _ops(*({"op": "StepPlanned", "id": s, "name": s[0]} for s in (A, B, C)))
        if step == A:
            self.held = self.engine.writer.submit(lambda tx: self.gate.wait(60))
            return _ops({"op": "StepRun", "id": A, "name": "a", "data": 1})
        if step == B:
            await self.committed.wait()
            return _ops(
                {"op": "StepRun", "id": B, "name": "b", "data": 2},
                {"op": "StepPlanned", "id": D, "name": "d"},
            )
        if step == C:
            await self.d_sent.wait()
            raise SdkRequestError(f"request for step {step} failed: connection refused")
        return _ops({"op": "StepRun", "id": step, "name": step[0], "data": 0})


async def test_a_failed_request_does_not_lose_the_commits_the_others_wait_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("stepline-dev")
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock) as t:
        sdk = OrderedSdk(app.engine)
        commit_later, send, request = (
            PassRequests.commit_later,
            PassRequests.send,
            PassRequests.request,
        )

        def counted_commit(self: PassRequests, commit: Any) -> None:
            commit_later(self, commit)
            sdk.committed.set()

        def noted_send(self: PassRequests, step_id: str, name: str = "") -> None:
            send(self, step_id, name)
            if step_id == D:
                sdk.d_sent.set()

        async def releasing_request(self: PassRequests, step_id: str, *args: Any) -> Any:
            try:
                return await request(self, step_id, *args)
            except asyncio.CancelledError:
                if step_id == D:  # the pass gave up on D: let the held commits be written
                    sdk.gate.set()
                raise

        monkeypatch.setattr(PassRequests, "commit_later", counted_commit)
        monkeypatch.setattr(PassRequests, "send", noted_send)
        monkeypatch.setattr(PassRequests, "request", releasing_request)
        try:
            await SdkApps(app, sdk).register(tiny_registration())
            [event_id] = await app.send_async(Event("tiny/a", {}))
            [run] = await app.runs(event_id=event_id)
            failed = await t.wait_for_status(run.run_id, "RETRYING")
        finally:
            sdk.gate.set()
        assert sdk.posted == [DISCOVERY, A, B, C]
        assert sdk.gate.is_set() and sdk.d_sent.is_set()
        # both steps the SDK ran are in the memo: the retry does not run them again
        steps = {s.id: (s.status, s.output) for s in failed.steps}
        assert steps.get("a") == ("COMPLETED", 1)
        assert steps.get("b") == ("COMPLETED", 2)
