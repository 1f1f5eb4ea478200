"""``HttpServer``: uvicorn inside the caller's loop, stopped by the caller."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stepline.server.serve import HttpServer, run_serving


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
        # real time: a poll of the server task's start, bounded by the count
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


def test_serving_starts_with_the_start_up_objects_out_of_the_collector() -> None:
    # a full collection while serving walks only what serving made (gc.freeze): the start-up
    # objects made it take 20-100 ms, every request in flight waiting (the event API's p99)
    frozen_before = gc.get_freeze_count()

    async def main() -> int:
        return gc.get_freeze_count()

    # what serving froze stays frozen beside what the collection froze (tests/conftest.py): an
    # unfreeze here gave this process's later tests the collection's million objects to walk
    assert run_serving(main()) > frozen_before
