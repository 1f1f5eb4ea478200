"""Payload search through the REST API (issue 9): ``GET /api/v1/runs?q=<CEL>`` with the scan
bound, how far a page scanned, cursor pages, and a 400 naming an invalid query."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stepline import App, Context, TriggerEvent

from .conftest import ServeFn

PUSHED = "event.data.n == 1"  # decided by the store first
ALONE = "event.data.n + 0 == 1"  # the same, CEL alone


@pytest.fixture
def app() -> App:
    app = App("search-api-app")

    @app.function(id="echo", trigger=TriggerEvent("item"))
    async def echo(ctx: Context) -> int:
        return int(await ctx.step.run("n", lambda: ctx.event.data["n"]))

    return app


async def _runs_of(client: httpx.AsyncClient, app: App, count: int) -> list[str]:
    """Send ``count`` events ({"n": i % 3}) one by one; their runs, oldest first, ended."""
    runs: list[str] = []
    for i in range(count):
        response = await client.post("/e/key", json={"name": "item", "data": {"n": i % 3}})
        [event_id] = response.json()["ids"]
        [run] = await app.runs(event_id=event_id)
        runs.append(run.run_id)
    for run_id in runs:
        await app.wait_for_run(run_id)
    return runs


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/runs", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_search_in_pages(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        runs = await _runs_of(client, app, 12)
        expected = [runs[i] for i in reversed(range(12)) if i % 3 == 1]
        for query in (PUSHED, ALONE):
            whole = await _search(client, q=query)
            assert [r["run_id"] for r in whole["data"]] == expected, query
            assert whole["data"][0]["steps"][0]["output"] == 1  # the steps, as the runs list
            assert whole["next_cursor"] is None
            assert whole["search"] == {
                "scan": 10_000,
                "scanned": 12,
                "complete": True,
                "failed": 0,
                "error": None,
            }
            for limit, scan in ((1, 100), (50, 5), (2, 4)):
                joined: list[str] = []
                params: dict[str, Any] = {"q": query, "limit": limit, "scan": scan}
                while True:
                    page = await _search(client, **params, steps="false")
                    assert page["search"]["scanned"] <= scan
                    assert page["search"]["complete"] is (page["next_cursor"] is None)
                    joined += [r["run_id"] for r in page["data"]]
                    if page["next_cursor"] is None:
                        break
                    params["cursor"] = page["next_cursor"]
                assert joined == expected, (query, limit, scan)
            # a page with no match whose scan stopped is not the end
            first = await _search(client, q=query, scan=1)
            assert first["data"] == [] and first["next_cursor"] is not None
            assert (first["search"]["scanned"], first["search"]["complete"]) == (1, False)
        narrowed = await _search(client, q=PUSHED, status="failed")
        assert narrowed["data"] == [] and narrowed["search"]["complete"] is True


async def test_an_invalid_search_is_a_400_naming_the_problem(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        await _runs_of(client, app, 2)
        nothing = await client.get("/api/v1/runs", params={"q": "event.data.n == 7"})
        assert nothing.status_code == 200 and nothing.json()["data"] == []
        invalid = await client.get("/api/v1/runs", params={"q": "event.data.n =="})
        assert invalid.status_code == 400
        body = invalid.json()
        assert body["error"].startswith("invalid search: ") and body["query"] == "event.data.n =="
        unknown = await client.get("/api/v1/runs", params={"q": "payload.n == 1"})
        assert unknown.status_code == 400 and "payload" in unknown.json()["error"]
        mixed = await client.get("/api/v1/runs", params={"q": PUSHED, "event": "x"})
        assert mixed.status_code == 400
        assert mixed.json()["error"] == "q cannot be combined with event"
        for scan in ("0", "-1", "many", "100001"):
            bad = await client.get("/api/v1/runs", params={"q": PUSHED, "scan": scan})
            assert bad.status_code == 400 and "scan" in bad.json()["error"], scan
        cursor = await client.get("/api/v1/runs", params={"q": PUSHED, "cursor": "nope"})
        assert cursor.status_code == 400 and "cursor" in cursor.json()["error"]


async def test_the_openapi_document_describes_the_search(serve: ServeFn) -> None:
    async with serve() as (client, _):
        document = (await client.get("/openapi.json")).json()
        listing = document["paths"]["/api/v1/runs"]["get"]
        names = {p["name"] for p in listing["parameters"]}
        assert {"q", "scan", "cursor", "limit"} <= names
        page = listing["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(page["properties"]["search"]["properties"]) == {
            "scan",
            "scanned",
            "complete",
            "failed",
            "error",
        }
