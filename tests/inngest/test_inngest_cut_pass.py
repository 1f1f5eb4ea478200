"""A pass cut by the request limit (``InngestDriver.max_requests_per_pass``) keeps the steps it
planned but did not ask for as queued steps: PENDING, never started, QUEUED in the GraphQL
API and the dashboard, never RUNNING (they have not started), and the next pass asks for them.
Driven by a scripted SDK (the driver's ``post``); the real SDKs' cut passes are in
``test_inngest_planned.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from _stepline_dev import tiny_registration

from stepline import App, Event
from stepline.drivers.inngest import DISCOVERY, InngestDriver, SdkApps
from stepline.drivers.inngest._steps import planned_step
from stepline.sdk.run import StepInfo
from stepline.server.dashboard._views import build_timeline
from stepline.server.gql import _step_status
from stepline.store.records import StepRecord
from stepline.testing import MockClock, TestEngine

A, B, C = ("a" * 40, "b" * 40, "c" * 40)  # hashed step ids
SDK = {"X-Inngest-SDK": "scripted:v1", "X-Inngest-Req-Version": "1"}


class CutSdk(InngestDriver):
    """Two requests a pass: the first discovery plans A, B and C; the pass asks for A only
    (its second request) and is cut; the next asks for B and C. B's request notes the run's
    steps as stored then (``seen``), C's waits for that; the last discovery ends the run."""

    def __init__(self, app: App) -> None:
        super().__init__(checkpointing=False, max_requests_per_pass=2)
        self.app = app
        self.posted: list[str] = []
        self.seen: list[StepInfo] = []
        self.noted = asyncio.Event()  # B's request noted the steps (C answers only then)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        step = parse_qs(urlsplit(url).query)["stepId"][0]
        self.posted.append(step)
        if step == DISCOVERY and self.posted.count(DISCOVERY) == 1:
            ops = [{"op": "StepPlanned", "id": s, "name": s[0]} for s in (A, B, C)]
            return 206, SDK, orjson.dumps(ops)
        if step == DISCOVERY:
            return 200, SDK, b'"done"'
        if step == B:
            run = await self.app.get_run(headers["X-Run-ID"])
            assert run is not None
            self.seen = list(run.steps)
            self.noted.set()
        if step == C:
            await self.noted.wait()
        return 206, SDK, orjson.dumps([{"op": "StepRun", "id": step, "name": step[0], "data": 1}])


async def test_steps_planned_by_a_cut_pass_are_queued_not_running(tmp_path: Path) -> None:
    app = App("stepline-dev")
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db", clock=clock) as t:
        sdk = CutSdk(app)
        await SdkApps(app, sdk).register(tiny_registration())
        [event_id] = await app.send_async(Event("tiny/a", {}))
        [run] = await app.runs(event_id=event_id)
        done = await t.wait_for_status(run.run_id, "COMPLETED")
    # the limit held: a cut after A, then B and C at once, then the discovery that ends it
    assert sdk.posted[:2] == [DISCOVERY, A] and sorted(sdk.posted[2:4]) == [B, C]
    assert sdk.posted[4:] == [DISCOVERY]
    seen = {s.id: s for s in sdk.seen}
    assert seen["a"].status == "COMPLETED"
    for name in ("b", "c"):  # planned by the cut pass, not started when B was asked for
        step = seen[name]
        assert (step.status, step.started_at, step.queued) == ("PENDING", None, True)
        assert _step_status(step) == "QUEUED"
    # the dashboard's timeline of the run as it stood then
    timeline = build_timeline(replace(done, steps=sdk.seen), [], datetime.now(UTC))
    assert {s.id: s.status for s in timeline.steps} == {
        "a": "COMPLETED",
        "b": "QUEUED",
        "c": "QUEUED",
    }
    assert {s.id: (s.status, s.output) for s in done.steps} == {
        "a": ("COMPLETED", 1),
        "b": ("COMPLETED", 1),
        "c": ("COMPLETED", 1),
    }
    assert done.output == "done"


def test_a_running_step_of_an_older_cut_pass_is_still_planned() -> None:
    """A database written before planned steps were kept PENDING holds them as RUNNING (an SDK
    run's step is never RUNNING otherwise): the next pass still asks for them."""
    old = StepRecord("r", B, "b", "run", 1, "RUNNING")
    assert planned_step(old)
    assert planned_step(StepRecord("r", B, "b", "run", 1, "PENDING"))
    sleeping = StepRecord("r", C, "c", "sleep", 2, "PENDING", due_at=5.0, started_at=1.0)
    assert not planned_step(sleeping)
