"""Safe defaults across the server: side effects are never GET, keys never reach a log, and
concurrent event requests share transactions (and fsyncs) through the group-commit writer."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.routing import Route

from stepline import App
from stepline.server import ServerSettings, create_app

from .conftest import ServeFn, keyed_settings


def test_no_route_takes_get_for_a_side_effect(app: App) -> None:
    for route in create_app(app, ServerSettings()).routes:
        if isinstance(route, Route) and route.methods and "POST" in route.methods:
            assert "GET" not in route.methods, route.path


async def test_event_keys_never_reach_the_access_log(
    serve: ServeFn, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-very-secret-key"
    settings = keyed_settings(event_keys=(secret,), dev=False)
    with caplog.at_level(logging.DEBUG):
        async with serve(settings) as (client, _):
            assert (await client.post(f"/e/{secret}", json={"name": "a"})).status_code == 200
            assert (await client.post("/e/wrong-key", json={"name": "a"})).status_code == 401
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    access = [r.getMessage() for r in server if r.name == "stepline.server.access"]
    assert len(access) == 2
    assert access[0].startswith("POST /e/*** 200 ") and access[1].startswith("POST /e/*** 401 ")
    assert not any(secret in r.getMessage() or "wrong-key" in r.getMessage() for r in server)


async def test_concurrent_requests_share_transactions(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        writer = app.engine.writer
        transactions, jobs = writer.transactions, writer.jobs
        responses = await asyncio.gather(
            *(client.post("/e/k", json={"name": "load", "data": {"i": i}}) for i in range(20))
        )
        assert all(r.status_code == 200 for r in responses)
        ids = [r.json()["ids"][0] for r in responses]
        stored = await app.engine.read(app.engine.store.get_events, ids)
        assert sorted(e.internal_id for e in stored) == sorted(ids)  # each acked once stored
        assert sorted(e.data["i"] for e in stored) == list(range(20))
        # the requests' ingestions were gathered into shared write jobs, hence transactions
        assert 1 <= writer.jobs - jobs < 20
        assert writer.transactions - transactions < 20
