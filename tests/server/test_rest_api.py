"""The REST API against the ASGI app: every route's status codes and bodies, auth on and off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Route

from stepline import App, Context, NonRetriableError, RateLimit, TriggerEvent
from stepline.server import ServerSettings, create_app
from stepline.testing import MockClock

from .conftest import API_TOKEN, ServeFn, keyed_settings, until

AUTH = {"authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def app() -> App:
    app = App("rest-app")

    @app.function(id="greet", trigger=TriggerEvent("user/signed-up"))
    async def greet(ctx: Context) -> dict[str, Any]:
        name = await ctx.step.run("name", lambda: ctx.event.data["name"])
        return {"hello": name}

    @app.function(id="nap", trigger=TriggerEvent("nap/start"), cancel_on=[])
    async def nap(ctx: Context) -> str:
        await ctx.step.sleep("long", "1000d")
        return "rested"

    @app.function(id="fragile", trigger=TriggerEvent("fragile/go"), retries=0)
    async def fragile(ctx: Context) -> None:
        await ctx.step.run("first", lambda: 1)
        await ctx.step.run("boom", _boom)

    @app.function(id="limited", trigger=TriggerEvent("limited/go"), rate_limit=RateLimit(1, "1h"))
    async def limited(ctx: Context) -> None:
        return None

    return app


def _boom() -> None:
    raise NonRetriableError("boom")


async def _send(client: httpx.AsyncClient, *events: dict[str, Any]) -> list[str]:
    response = await client.post("/e/key", json=list(events))
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["ids"]
    return ids


async def _run_of(app: App, event_id: str) -> str:
    [run] = await app.runs(event_id=event_id)
    return run.run_id


async def test_functions_list_get_pause_resume(serve: ServeFn) -> None:
    async with serve() as (client, _):
        listed = (await client.get("/api/v1/functions")).json()["data"]
        assert [f["id"] for f in listed] == ["greet", "nap", "fragile", "limited"]
        greet = (await client.get("/api/v1/functions/greet")).json()
        assert greet["triggers"] == [{"event": "user/signed-up", "if": None}]
        assert greet["paused"] is False and greet["retries"] == 4
        limited = (await client.get("/api/v1/functions/limited")).json()
        assert limited["flow_control"]["rate_limit"] == {"limit": 1, "period": 3600.0, "key": None}
        assert (await client.get("/api/v1/functions/nope")).status_code == 404
        paused = await client.post("/api/v1/functions/greet/pause")
        assert (paused.status_code, paused.json()["paused"]) == (200, True)
        assert (await client.get("/api/v1/functions/greet")).json()["paused"] is True
        resumed = await client.post("/api/v1/functions/greet/resume")
        assert resumed.json()["paused"] is False
        assert (await client.get("/api/v1/functions/greet/pause")).status_code == 405


async def test_events_list_filters_cursor_and_get(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        ids = await _send(
            client, *({"name": "user/signed-up", "data": {"name": f"u{i}"}} for i in range(3))
        )
        for event_id in ids:  # their runs' inngest/function.finished events are in too
            await app.wait_for_run(await _run_of(app, event_id))
        other = await _send(client, {"name": "other"})
        every = (await client.get("/api/v1/events")).json()
        assert [e["id"] for e in every["data"]][:1] == other
        assert [e["id"] for e in every["data"]][-3:] == list(reversed(ids))
        assert every["next_cursor"] is None
        named = (await client.get("/api/v1/events", params={"name": "other"})).json()["data"]
        assert [e["id"] for e in named] == other
        first = (await client.get("/api/v1/events", params={"limit": 2})).json()
        assert len(first["data"]) == 2 and first["next_cursor"]
        rest = await client.get("/api/v1/events", params={"cursor": first["next_cursor"]})
        assert [e["id"] for e in first["data"] + rest.json()["data"]] == [
            e["id"] for e in every["data"]
        ]
        one = (await client.get(f"/api/v1/events/{ids[0]}")).json()
        assert one["name"] == "user/signed-up" and one["data"] == {"name": "u0"}
        assert [(r["function_id"], r["effect"]) for r in one["runs"]] == [("greet", "started")]
        assert (await client.get("/api/v1/events/nope")).status_code == 404
        inngest = (await client.get("/v1/events", params={"name": "other"})).json()
        assert [e["internal_id"] for e in inngest["data"]] == other
        for bad in ({"limit": "0"}, {"cursor": "!!"}, {"received_after": "yesterday"}):
            assert (await client.get("/api/v1/events", params=bad)).status_code == 400


async def test_runs_list_filters_and_cursor(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        ids = await _send(
            client, *({"name": "user/signed-up", "data": {"name": f"u{i}"}} for i in range(5))
        )
        for event_id in ids:
            await app.wait_for_run(await _run_of(app, event_id))
        every = (await client.get("/api/v1/runs", params={"function": "greet"})).json()["data"]
        assert len(every) == 5
        assert every[0]["steps"][0]["id"] == "name"
        assert {r["status"] for r in every} == {"COMPLETED"}
        pages: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "steps": "false"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/v1/runs", params=params)).json()
            pages += page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [r["run_id"] for r in pages] == [r["run_id"] for r in every]
        assert "steps" not in pages[0]
        by_event = (await client.get("/api/v1/runs", params={"event": ids[2]})).json()["data"]
        assert [r["event_ids"] for r in by_event] == [[ids[2]]]
        done = (await client.get("/api/v1/runs", params={"status": "completed"})).json()["data"]
        assert len(done) == 5
        future = (
            await client.get("/api/v1/runs", params={"created_after": "2100-01-01T00:00:00Z"})
        ).json()
        assert future["data"] == []
        assert (await client.get("/api/v1/runs", params={"status": "NAPPING"})).status_code == 400


async def _sleeping(app: App, run_id: str) -> bool:
    run = await app.get_run(run_id)
    return run is not None and run.status == "SLEEPING"


async def test_run_detail_cancel_and_conflicts(serve: ServeFn, app: App) -> None:
    async with serve(clock=MockClock(autojump=False)) as (client, _):
        [event_id] = await _send(client, {"name": "nap/start"})
        run_id = await _run_of(app, event_id)
        await until("the run sleeps", lambda: _sleeping(app, run_id))
        detail = (await client.get(f"/api/v1/runs/{run_id}")).json()
        assert detail["status"] == "SLEEPING"
        assert [e["id"] for e in detail["events"]] == [event_id]
        assert "RUN_STARTED" in [h["kind"] for h in detail["history"]]
        cancelled = await client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "enough"})
        assert cancelled.status_code == 200
        assert cancelled.json() == {"run_id": run_id, "cancelled": True}
        again = await client.post(f"/api/v1/runs/{run_id}/cancel")
        assert again.status_code == 409
        assert "has already ended (CANCELLED)" in again.json()["error"]
        assert (await client.post("/api/v1/runs/nope/cancel")).status_code == 404
        assert (await client.get("/api/v1/runs/nope")).status_code == 404
        assert (await client.get(f"/api/v1/runs/{run_id}/cancel")).status_code == 405


async def test_replay_from_start_and_from_a_step(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        [event_id] = await _send(client, {"name": "fragile/go"})
        run_id = await _run_of(app, event_id)
        failed = await app.wait_for_run(run_id)
        assert failed.status == "FAILED"
        whole = await client.post(f"/api/v1/runs/{run_id}/replay")
        assert whole.status_code == 201
        assert whole.json()["replay_of"] == run_id
        from_step = await client.post(f"/api/v1/runs/{run_id}/replay", json={"from_step": "boom"})
        assert from_step.status_code == 201
        replayed = await app.wait_for_run(from_step.json()["run_id"])
        assert [s.id for s in replayed.steps] == ["first", "boom"]
        unknown = await client.post(f"/api/v1/runs/{run_id}/replay", json={"from_step": "zzz"})
        assert unknown.status_code == 400
        assert "has no step 'zzz'" in unknown.json()["error"]
        assert (await client.post("/api/v1/runs/nope/replay")).status_code == 404
        bad = await client.post(f"/api/v1/runs/{run_id}/replay", json={"from_step": 3})
        assert bad.status_code == 400


async def test_bulk_cancel_with_a_preview(serve: ServeFn, app: App) -> None:
    async with serve(clock=MockClock(autojump=False)) as (client, _):
        ids = await _send(client, *({"name": "nap/start", "data": {"n": i}} for i in range(3)))
        run_ids = [await _run_of(app, i) for i in ids]
        preview = await client.post(
            "/api/v1/runs/cancel",
            json={"function_id": "nap", "dry_run": True, "if": "event.data.n >= 1"},
        )
        assert preview.status_code == 200
        found = preview.json()
        assert (found["dry_run"], found["count"]) == (True, 2)
        assert sorted(found["sample"]) == sorted(run_ids[1:])
        assert {(await app.get_run(r)).status for r in run_ids} != {"CANCELLED"}  # type: ignore[union-attr]
        done = await client.post("/api/v1/runs/cancel", json={"function_id": "nap"})
        assert (done.json()["count"], sorted(done.json()["cancelled"])) == (3, sorted(run_ids))
        for body, status in (
            ({}, 400),
            ({"function_id": "nope"}, 404),
            ({"function_id": "nap", "if": "event.data.n >"}, 400),
            ({"function_id": "nap", "limit": 0}, 400),
            ({"function_id": "nap", "created_after": "soon"}, 400),
        ):
            assert (await client.post("/api/v1/runs/cancel", json=body)).status_code == status
        assert (await client.post("/api/v1/runs/cancel", content=b"[1]")).status_code == 400


async def test_skipped_runs(serve: ServeFn) -> None:
    async with serve() as (client, _):
        await _send(client, {"name": "limited/go"}, {"name": "limited/go"})
        skipped = (await client.get("/api/v1/skipped", params={"function": "limited"})).json()
        assert [(s["function_id"], s["reason"]) for s in skipped["data"]] == [
            ("limited", "rate_limit")
        ]


async def test_metrics(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        [event_id] = await _send(client, {"name": "user/signed-up", "data": {"name": "m"}})
        await app.wait_for_run(await _run_of(app, event_id))
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.text
        assert 'stepline_runs{status="COMPLETED"} 1' in text
        assert "stepline_events_accepted_total 1" in text
        assert 'stepline_step_duration_seconds_bucket{le="+Inf"} 1' in text
        assert "stepline_step_duration_seconds_count 1" in text
        assert "stepline_queue_depth 0" in text
        assert "stepline_queue_oldest_due_seconds 0" in text


async def test_openapi_describes_every_route(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        document = (await client.get("/openapi.json")).json()
        assert document["openapi"].startswith("3.")
        docs = await client.get("/api/docs")
        assert docs.status_code == 200 and "openapi.json" in docs.text
        assert "https://" not in docs.text  # nothing from a CDN
    api = ("/api/v1", "/e/", "/v1/", "/metrics", "/health", "/ready")
    served = {
        (route.path, method.lower())
        for route in create_app(app, ServerSettings()).routes
        if isinstance(route, Route) and route.methods and route.path.startswith(api)
        for method in route.methods
        if method != "HEAD"
    }
    documented = {(path, m) for path, ops in document["paths"].items() for m in ops}
    undocumented = served - documented
    assert not undocumented


ROUTES = [
    ("get", "/api/v1/functions"),
    ("get", "/api/v1/functions/greet"),
    ("post", "/api/v1/functions/greet/pause"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/runs"),
    ("post", "/api/v1/runs/cancel"),
    ("get", "/api/v1/skipped"),
    ("get", "/metrics"),
    ("get", "/v1/events"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_the_api_token_is_required_when_configured(
    serve: ServeFn, method: str, path: str
) -> None:
    async with serve(keyed_settings()) as (client, _):
        missing = await client.request(method, path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.request(method, path, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.request(
            method, path, headers=AUTH, json={"function_id": "greet"} if method == "post" else None
        )
        assert right.status_code == 200, right.text
        assert (await client.get("/openapi.json")).status_code == 200  # public


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_without_tokens_a_closed_server_answers_503(
    serve: ServeFn, method: str, path: str
) -> None:
    async with serve(ServerSettings()) as (client, _):
        response = await client.request(method, path)
        assert response.status_code == 503
        assert "no API tokens are configured" in response.json()["error"]


async def test_the_dashboards_export_of_a_run_is_the_rest_apis_shape(
    serve: ServeFn, app: App
) -> None:
    # One JSON shape for a run (server/views.py): the dashboard's export had its own (times to the
    # millisecond with "+00:00", no worker_id, no executing_attempt), unlike REST and the CLI.
    async with serve() as (client, _):
        [event_id] = await _send(client, {"name": "fragile/go"})
        run_id = await _run_of(app, event_id)
        await app.wait_for_run(run_id)
        detail = (await client.get(f"/api/v1/runs/{run_id}")).json()
        exported = (await client.get(f"/runs/{run_id}/export")).json()
    run_fields = {k: v for k, v in detail.items() if k not in ("steps", "history", "events")}
    assert exported["run"] == run_fields
    assert exported["steps"] == detail["steps"]
    assert exported["history"] == detail["history"]
    assert [s["id"] for s in exported["steps"]] == ["first", "boom"]
    assert {"executing_attempt", "started_at"} <= set(exported["steps"][0])
    assert {"started_at", "worker_id"} <= set(exported["history"][0])


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/runs?function=%00"),
        ("get", "/api/v1/runs/%00"),
        ("get", "/api/v1/events/%00"),
        ("get", "/api/v1/events?name=%00"),
        ("post", "/api/v1/runs/%00/replay"),
        ("get", "/dashboard/runs/%00"),
    ],
)
async def test_a_nul_in_a_path_or_a_query_is_a_400_on_every_store(
    serve: ServeFn, method: str, url: str
) -> None:
    # PostgreSQL's text cannot hold a NUL: its refusal of the lookup was an unhandled
    # StoreRefusedValue, a 500, where SQLite and memory found nothing (a 404, an empty list;
    # lead, eighteenth stop). No stored name or id holds one: a 400 on every store
    async with serve() as (client, _):
        response = await getattr(client, method)(url)
    assert response.status_code == 400, response.text
    assert "NUL character" in response.json()["error"]


async def test_a_value_the_store_refuses_in_a_request_is_a_400_not_a_500(
    serve: ServeFn,
) -> None:
    # a search whose CEL literal holds a NUL ("\u0000": no NUL in the query itself) reaches
    # PostgreSQL's text as a parameter there; any StoreError a handler lets through is answered
    # (400 for a refused value, 503 while unavailable), never a 500
    async with serve() as (client, _):
        response = await client.get("/api/v1/runs", params={"q": 'event.data.x == "\\u0000"'})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert "refused a value" in response.json()["error"]
