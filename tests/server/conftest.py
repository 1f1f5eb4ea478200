"""Fixtures for the server's tests: an app on a fresh SQLite file (and on the memory store),
a worker with virtual time, and an HTTP client talking to the ASGI application in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import pgtest
import sqlitetest
from stepline import App
from stepline.server import ServerSettings, create_app
from stepline.testing import TestEngine

EVENT_KEY = "test-event-key"
API_TOKEN = "test-api-token"


def open_settings(**changes: Any) -> ServerSettings:
    """Settings of a loopback server without keys (as `stepline dev` runs)."""
    return ServerSettings(dev=True, allow_unauthenticated=True, **changes)


def keyed_settings(**changes: Any) -> ServerSettings:
    """Settings of a server with one event key and one API token."""
    fields: dict[str, Any] = {"event_keys": (EVENT_KEY,), "api_tokens": (API_TOKEN,)}
    return ServerSettings(**{**fields, **changes})


ServeFn = Callable[..., Any]


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check()`` (sync or async) until truthy and return it; ``AssertionError`` naming
    ``what`` after ``timeout`` real seconds (as tests/integration/_polling.py)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)  # real time: the poll interval; the deadline bounds the wait


@pytest.fixture
def serve(app: App, store_kind: str, tmp_path: Path) -> ServeFn:
    """``async with serve(settings) as (client, t):`` the app's server with a running worker
    (``t``: the TestEngine) and an httpx client on it."""

    @asynccontextmanager
    async def open_(
        settings: ServerSettings | None = None, **options: Any
    ) -> AsyncIterator[tuple[httpx.AsyncClient, TestEngine]]:
        path = tmp_path / "db.sqlite"
        if store_kind == "sqlite":
            sqlitetest.fresh_database(path)
        store = pgtest.engine_store(store_kind)
        async with TestEngine(app, store=store, path=path, **options) as t:
            asgi = create_app(app, settings or open_settings())
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client, t

    return open_
