"""``GET /v1/events/{event_id}/runs``, the runs an event started as Inngest's REST API lists them
(``pkg/api/apiv1/events.go`` ``GetEventRuns``; the docs' "Fetch run status and output" polls it
with the ids ``inngest.send`` returned until ``data[0].status`` is ``Completed``, then reads
``data[0].output``). Neither SDK calls it; the shape is the documented one.

issue 10, "The dev server's read API": tools written for Inngest's servers work against Stepline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from stepline import App, Context, NonRetriableError, TriggerEvent
from stepline.testing import MockClock

from .conftest import API_TOKEN, ServeFn, keyed_settings, until


@pytest.fixture
def app() -> App:
    app = App("event-runs")

    @app.function(id="greet", trigger=TriggerEvent("user/signed-up"))
    async def greet(ctx: Context) -> dict[str, Any]:
        name = await ctx.step.run("name", lambda: ctx.event.data["name"])
        return {"hello": name}

    @app.function(id="audit", trigger=TriggerEvent("user/signed-up"), retries=0)
    async def audit(ctx: Context) -> None:
        await ctx.step.run("check", _refuse)

    @app.function(id="nap", trigger=TriggerEvent("nap/start"))
    async def nap(ctx: Context) -> str:
        await ctx.step.sleep("long", "1000d")
        return "rested"

    return app


def _refuse() -> None:
    raise NonRetriableError("not allowed")


async def _runs(client: httpx.AsyncClient, event_id: str, **headers: str) -> dict[str, Any]:
    response = await client.get(f"/v1/events/{event_id}/runs", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_events_runs_with_their_status_and_output(serve: ServeFn) -> None:
    async with serve() as (client, t):
        sent = await client.post("/e/key", json={"name": "user/signed-up", "data": {"name": "ada"}})
        [event_id] = sent.json()["ids"]

        async def ended() -> list[dict[str, Any]] | None:
            runs: list[dict[str, Any]] = (await _runs(client, event_id))["data"]
            done = len(runs) == 2 and all(r["status"] != "Running" for r in runs)
            return runs if done else None

        runs = await until("both runs to end", ended)
        by_function = {run["function_id"]: run for run in runs}
        greet, audit = by_function["greet"], by_function["audit"]
        assert greet["status"] == "Completed" and greet["output"] == {"hello": "ada"}
        assert audit["status"] == "Failed"
        assert "not allowed" in audit["output"]["message"]  # a failed run's output: its error
        stored = {r.run_id: r for r in await t.app.runs(event_id=event_id)}
        for run in runs:
            assert run["event_id"] == event_id and run["function_version"] == 0
            assert run["environment_id"] == "00000000-0000-0000-0000-000000000000"
            assert (run["batch_id"], run["cron"]) == (None, None)
            assert run["run_id"] in stored
            started = datetime.fromisoformat(run["run_started_at"])
            assert datetime.fromisoformat(run["ended_at"]) >= started
        assert [r["run_id"] for r in runs] == sorted(
            stored, key=lambda i: (stored[i].created_at, i)
        )  # oldest first


async def test_runs_in_progress_and_cancelled(serve: ServeFn) -> None:
    # a clock that moves only when told to: an idle engine would otherwise jump to the end of
    # the sleep before the test reads the run sleeping (a loaded machine's gate did)
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        sent = await client.post("/e/key", json={"name": "nap/start"})
        [event_id] = sent.json()["ids"]
        [run] = await until("the run", lambda: t.app.runs(event_id=event_id))
        await t.wait_for_status(run.run_id, "SLEEPING")
        [sleeping] = (await _runs(client, event_id))["data"]
        assert (sleeping["status"], sleeping["output"], sleeping["ended_at"]) == (
            "Running",
            None,
            None,
        )
        assert (await client.post(f"/api/v1/runs/{run.run_id}/cancel")).status_code == 200
        await t.wait_for_status(run.run_id, "CANCELLED")
        [cancelled] = (await _runs(client, event_id))["data"]
        assert (cancelled["status"], cancelled["output"]) == ("Cancelled", None)


async def test_the_event_is_read_once_for_all_its_runs(
    serve: ServeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    get_event = App.get_event

    async def counted(self: App, event_id: str) -> Any:
        reads.append(event_id)
        return await get_event(self, event_id)

    monkeypatch.setattr(App, "get_event", counted)
    async with serve() as (client, _):
        sent = await client.post("/e/key", json={"name": "user/signed-up", "data": {"name": "b"}})
        [event_id] = sent.json()["ids"]
        reads.clear()
        assert len((await _runs(client, event_id))["data"]) == 2  # greet and audit
        assert reads == [event_id]


async def test_an_event_that_started_nothing_has_no_runs(serve: ServeFn) -> None:
    async with serve() as (client, _):
        sent = await client.post("/e/key", json={"name": "nobody/listens"})
        [event_id] = sent.json()["ids"]
        body = await _runs(client, event_id)
        assert body["data"] == []
        fetched = datetime.fromisoformat(body["metadata"]["fetched_at"])
        cached = datetime.fromisoformat(body["metadata"]["cached_until"])
        assert (cached - fetched).total_seconds() == 5  # as Inngest's API caches it
        assert (await _runs(client, "01HWAVEB858VPPX47Z65GR6P6R"))["data"] == []


async def test_an_id_that_is_no_ulid_is_refused_as_inngests(serve: ServeFn) -> None:
    async with serve() as (client, _):
        for bad in (
            "nope",
            "01HWAVEB858VPPX47Z65GR6P6",
            "01HWAVEB858VPPX47Z65GR6P6U",
            "81HWAVEB858VPPX47Z65GR6P6R",
        ):
            reply = await client.get(f"/v1/events/{bad}/runs")
            assert reply.status_code == 400, bad
            assert reply.json()["error"] == f"Invalid event ID: {bad}"


async def test_the_api_token_is_required_when_configured(serve: ServeFn) -> None:
    async with serve(keyed_settings()) as (client, _):
        missing = await client.get("/v1/events/01HWAVEB858VPPX47Z65GR6P6R/runs")
        assert missing.status_code == 401
        await _runs(client, "01HWAVEB858VPPX47Z65GR6P6R", authorization=f"Bearer {API_TOKEN}")
