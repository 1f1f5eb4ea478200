"""An event's ``v`` (the sender's version of its shape, Inngest's ``v``): accepted by the event
API and by ``App.send`` as a string, refused otherwise, kept, and given back everywhere Inngest
gives it: ``ctx.event.v`` (and ``ctx.events``), the event a wait got, ``GET /v1/events`` and
``/v1/events/{id}`` (only when given, as Inngest's ``v,omitempty``) and Stepline's own event
views (``/api/v1/events``: null when none)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.errors import EventError
from stepline.sdk.step import Step

from .conftest import ServeFn, until

VERSION = "2026-12-01.1"


@pytest.fixture
def app() -> App:
    app = App("versions")

    @app.function(id="child")
    async def child(ctx: Context) -> str | None:
        return ctx.event.v

    @app.function(id="versions", trigger=TriggerEvent("v/start"))
    async def versions(ctx: Context) -> dict[str, Any]:
        got = await ctx.step.wait_for_event("go", event="v/go", timeout="1h")
        return {
            "v": ctx.event.v,
            "vs": [e.v for e in ctx.events],
            "waited": None if got is None else got.v,
            "invoked": await ctx.step.invoke("invoke", function=child, v="invoked.1"),
        }

    return app


async def _ended(client: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        reply = await client.get(f"/v1/events/{event_id}/runs")
        runs: list[dict[str, Any]] = reply.json()["data"]
        return runs[0] if runs and runs[0]["status"] != "Running" else None

    return await until("the run to end", ended)


async def test_a_functions_event_and_the_event_its_wait_got_have_their_v(serve: ServeFn) -> None:
    async with serve() as (client, t):
        sent = await client.post("/e/key", json={"name": "v/start", "v": VERSION})
        assert sent.status_code == 200, sent.text
        [event_id] = sent.json()["ids"]

        async def waiting() -> bool:
            [run] = await t.app.runs(event_id=event_id)
            return any(step.kind == "wait" for step in run.steps)

        await until("the run to wait", waiting)
        await t.app.send_async(Event("v/go", v="go.2"))
        run = await _ended(client, event_id)
        assert run["output"] == {
            "v": VERSION,
            "vs": [VERSION],
            "waited": "go.2",
            "invoked": "invoked.1",
        }


async def test_the_apis_give_an_events_v_back_only_when_it_has_one(serve: ServeFn) -> None:
    async with serve() as (client, _):
        sent = await client.post(
            "/e/key",
            json=[
                {"name": "v/other", "v": VERSION},
                {"name": "v/other"},
                {"name": "v/other", "v": ""},
            ],
        )
        versioned, plain, empty = sent.json()["ids"]
        one = (await client.get(f"/v1/events/{versioned}")).json()["data"]
        assert one["v"] == VERSION
        for unversioned in (plain, empty):  # "" is none, as Inngest's omitempty
            assert "v" not in (await client.get(f"/v1/events/{unversioned}")).json()["data"]
        listed = (await client.get("/v1/events", params={"name": "v/other"})).json()["data"]
        assert [e.get("v") for e in listed] == [None, None, VERSION]
        assert "v" not in listed[0]
        ours = (await client.get(f"/api/v1/events/{versioned}")).json()
        assert ours["v"] == VERSION
        assert (await client.get(f"/api/v1/events/{plain}")).json()["v"] is None
        page = (await client.get("/api/v1/events", params={"name": "v/other"})).json()
        assert [e["v"] for e in page["data"]] == [None, None, VERSION]


@pytest.mark.parametrize("bad", [1, True, {"a": 1}, ["x"], "a\x00b"])
async def test_a_v_that_is_not_storable_text_is_refused(serve: ServeFn, app: App, bad: Any) -> None:
    async with serve() as (client, _):
        reply = await client.post("/e/key", json={"name": "v/other", "v": bad})
        assert reply.status_code == 400, reply.text
        assert "v " in reply.json()["error"]
        with pytest.raises(EventError, match="v "):
            await app.send_async(Event("v/other", v=bad))
    [child] = [fn for fn in app.functions if fn.id == "child"]
    if not isinstance(bad, str):  # a step.invoke's v is checked in the caller's code

        class Refusing:
            async def step_invoke(self, *args: Any) -> None:
                raise AssertionError("not reached")

        with pytest.raises(EventError, match="v must be a string"):
            await Step(Refusing()).invoke("i", function=child, v=bad)  # type: ignore[arg-type]
