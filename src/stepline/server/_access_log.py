"""Access log lines without secrets: ``POST /e/*** 200 1.2ms``.

Uvicorn's own access log is turned off (it would print event keys, which are path segments);
this ASGI middleware logs each request on ``stepline.server.access`` with the key replaced and
the query string left out.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("stepline.server.access")


def redacted_path(path: str) -> str:
    """The path as it may be logged: an event key (``/e/{key}``) becomes ``***``."""
    if path.startswith("/e/"):
        return "/e/***"
    return path


class AccessLog:
    """Logs one line per HTTP request at ``level`` (DEBUG under ``stepline dev``)."""

    def __init__(self, app: ASGIApp, level: int = logging.INFO) -> None:
        self.app = app
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(self.level):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            log_request(scope, status, started, self.level)


def log_request(scope: Scope, status: int, started: float, level: int) -> None:
    """The access log line of a request that began at ``started`` (``time.perf_counter()``)."""
    took = (time.perf_counter() - started) * 1000
    path = redacted_path(scope.get("root_path", "") + scope["path"])
    log.log(level, "%s %s %d %.1fms", scope["method"], path, status, took)
