"""``HttpServer``: uvicorn inside the caller's loop, stopped by the caller."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stepline.server.serve import HttpServer


def _hello(_request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def test_a_server_cancelled_while_serving_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a second SIGINT stops `stepline dev` at once: asyncio.run cancels every task, uvicorn's
    # included; uvicorn logged its cancelled lifespan task as an error with two tracebacks
    # (seen as a flake of test_cli_stops)
    http = HttpServer(Starlette(routes=[Route("/", _hello)]), "127.0.0.1", 0)
    serving = asyncio.create_task(http.run())
    for _ in range(500):
        if http.started:
            break
        await asyncio.sleep(0.01)
    assert http.started
    caplog.set_level(logging.INFO)
    http.stop()
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    left = asyncio.all_tasks() - {asyncio.current_task()}
    for task in left:  # what asyncio.run does to the tasks left when it ends
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
