"""``/health`` (the process answers) and ``/ready`` (it can read its database)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.errors import StoreError
from stepline.server._problems import store_failure_text
from stepline.server._responses import JSONResponse, error
from stepline.server._state import stepline_app


async def health(request: Request) -> Response:
    """200 while the process serves requests (a liveness probe: never touches the database)."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 when the database answers a read, else 503 naming the problem (a readiness probe)."""
    app = stepline_app(request)
    engine = app.engine
    try:
        await engine.read(engine.store.paused_functions, app.id)
    except StoreError as exc:
        return error(503, store_failure_text("database not ready", exc))
    return JSONResponse({"status": "ready"})


def health_routes() -> list[BaseRoute]:
    """The probes (open to everyone: they say nothing about the data)."""
    return [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/ready", ready, methods=["GET", "HEAD"]),
    ]
