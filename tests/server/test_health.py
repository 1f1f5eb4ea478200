"""The probes, the composition of routes, and App.asgi()."""

from __future__ import annotations

import logging
import sqlite3
from typing import NoReturn

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from stepline import App
from stepline.errors import StoreError, StoreRefusedValue, StoreUnavailable
from stepline.server import ServerSettings, _problems
from stepline.server._repeated_warnings import RepeatedWarnings
from stepline.testing import TestEngine

from .conftest import ServeFn, open_settings


async def test_health_and_ready_answer(serve: ServeFn) -> None:
    async with serve() as (client, _):
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}


async def test_probes_need_no_key(serve: ServeFn) -> None:
    async with serve(ServerSettings()) as (client, _):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 200


async def test_ready_is_503_when_the_database_cannot_be_read(serve: ServeFn) -> None:
    async with serve() as (client, t):
        store = t.app.engine.store

        def broken(*args: object) -> set[str]:
            raise store_error

        store_error = StoreUnavailable("disk I/O error", "test.db")
        original = store.paused_functions
        store.paused_functions = broken  # type: ignore[method-assign]
        try:
            response = await client.get("/ready")
        finally:
            store.paused_functions = original  # type: ignore[method-assign]
        assert response.status_code == 503
        assert response.json()["status"] == 503
        assert "disk I/O error" in response.json()["error"]


async def test_probes_refuse_post(serve: ServeFn) -> None:
    async with serve() as (client, _):
        assert (await client.post("/health")).status_code == 405


async def test_app_asgi_mounts_in_another_application(app: App, tmp_path: object) -> None:
    app.db = "memory://"
    outer = Starlette(routes=[Mount("/stepline", app=app.asgi(open_settings()))])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/stepline/health")
    app.close()
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def _bodies_failing_with(
    error: StoreError, client: httpx.AsyncClient, t: TestEngine
) -> dict[str, httpx.Response]:
    """The answers of /ready, /metrics and the event API while the store's reads and the
    engine's ingestion raise ``error``."""

    def broken(*args: object, **kwargs: object) -> NoReturn:
        raise error

    async def broken_async(*args: object, **kwargs: object) -> NoReturn:
        raise error

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(t.app.engine.store, "paused_functions", broken)
        patch.setattr(t.app, "stats", broken_async)
        patch.setattr(t.app.engine, "ingest_records", broken_async)
        return {
            "/ready": await client.get("/ready"),
            "/metrics": await client.get("/metrics"),
            "/e/": await client.post("/e/key", json={"name": "a/b", "data": {}}),
        }


DATABASE = "postgresql://stepline@db.internal:5432/prod"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StoreError("could not write block 7", DATABASE), 503),
        (StoreUnavailable("disk I/O error", DATABASE), 503),
        (StoreRefusedValue("integer out of range", DATABASE), 400),
    ],
)
async def test_store_errors_name_the_problem_but_not_the_database(
    serve: ServeFn, app: App, error: StoreError, status: int
) -> None:
    """The bodies of /ready, /metrics and the event API say what failed (the backend's reason)
    without the database's label (a host, port and database name are the operator's, not the
    caller's: the event API answers anyone with an event key, /ready everyone)."""

    async with serve() as (client, t):
        responses = await _bodies_failing_with(error, client, t)
    for where, response in responses.items():
        expected = status if where == "/e/" else 503
        assert response.status_code == expected, where
        body = response.json()["error"]
        assert error.reason in body, (where, body)
        assert "db.internal" not in body and DATABASE not in body, (where, body)


def _backend_errors(store_kind: str) -> list[BaseException]:
    """Errors of the backend ``store_kind`` as its driver raises them, that its store maps to
    ``StoreUnavailable`` (a transient failure: the usual cause of a 503)."""
    if store_kind == "sqlite":
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL
        full.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
        return [full]
    if store_kind.startswith("postgresql:"):  # (the URL of the test's database)
        import psycopg
        import psycopg_pool

        return [
            psycopg.OperationalError("server closed the connection unexpectedly"),
            psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        ]
    return []


async def test_the_backends_unavailable_stores_are_told_without_the_database(
    serve: ServeFn, app: App, store_kind: str
) -> None:
    """As above, with the errors each backend's store makes of its driver's (SQLite, PostgreSQL):
    their reason named the database too (its path, its URL's host, port and name), and the
    bodies of /ready, /metrics and the event API repeated it."""
    async with serve() as (client, t):
        store = t.app.engine.store
        for raw in _backend_errors(store_kind):
            error = store.store_error(raw)
            assert isinstance(error, StoreUnavailable), error
            assert error.database and error.database in str(error)  # for the operator's log

            responses = await _bodies_failing_with(error, client, t)
            for where, response in responses.items():
                assert response.status_code == 503, where
                body = response.json()["error"]
                assert str(raw) in body, (where, body)  # the backend's reason
                assert error.database not in body, (where, body)


async def test_a_failing_store_is_logged_once_a_window_not_once_a_request(
    serve: ServeFn, caplog: pytest.LogCaptureFixture
) -> None:
    """While the store is unavailable every refused request answers 503 with the reason, but
    the server's log gets one warning, not one per request (a client retrying in a loop, or
    many of them, would flood it): the repeats are counted and told when the window ends
    (``RepeatedWarnings``, tested below)."""
    error = StoreUnavailable("server closed the connection unexpectedly", DATABASE)
    caplog.set_level(logging.WARNING, logger="stepline.server")
    async with serve() as (client, t):
        with pytest.MonkeyPatch.context() as patch:
            # the process's windows as at its start (another test's may still be open), one
            # longer than the test: 30 requests over 10 s (a loaded machine) ended the window,
            # its count told in a second line naming the reason
            fresh = RepeatedWarnings(_problems.log, window=3600.0)
            patch.setattr(_problems, "store_failures", fresh)

            async def broken(*args: object, **kwargs: object) -> NoReturn:
                raise error

            patch.setattr(t.app.engine, "ingest_records", broken)
            statuses = [
                (await client.post("/e/key", json={"name": "a/b", "data": {}})).status_code
                for _ in range(30)
            ]
    assert statuses == [503] * 30
    told = [r.getMessage() for r in caplog.records if error.reason in r.getMessage()]
    assert len(told) == 1, told
    assert DATABASE in told[0]  # the operator's log names the database
