"""``/api/v1/functions``: the app's functions (config, triggers, flow control, paused), pause
and resume."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.sdk.function import FunctionDef
from stepline.server._auth import require_api_token
from stepline.server._problems import Problem
from stepline.server._responses import JSONResponse
from stepline.server._state import stepline_app
from stepline.server.views import function_json

PREFIX = "/api/v1/functions"


def function_routes() -> list[BaseRoute]:
    return [
        Route(PREFIX, list_functions, methods=["GET"]),
        Route(PREFIX + "/{function_id}", get_function, methods=["GET"]),
        Route(PREFIX + "/{function_id}/pause", pause_function, methods=["POST"]),
        Route(PREFIX + "/{function_id}/resume", resume_function, methods=["POST"]),
    ]


def _function(request: Request) -> FunctionDef:
    app = stepline_app(request)
    function_id = request.path_params["function_id"]
    found = next((fn for fn in app.functions if fn.id == function_id), None)
    if found is None:
        raise Problem(404, f"app {app.id!r} has no function {function_id!r}")
    return found


async def list_functions(request: Request) -> Response:
    """The app's functions."""
    require_api_token(request)
    app = stepline_app(request)
    paused = await _paused(request)
    data = [function_json(fn, app.id, fn.id in paused) for fn in app.functions]
    return JSONResponse({"data": data})


async def get_function(request: Request) -> Response:
    """One function."""
    require_api_token(request)
    fn = _function(request)
    app = stepline_app(request)
    return JSONResponse(function_json(fn, app.id, fn.id in await _paused(request)))


async def pause_function(request: Request) -> Response:
    """Pause: its runs are created and held until it resumes."""
    require_api_token(request)
    fn = _function(request)
    app = stepline_app(request)
    await app.pause_function(fn.id)
    return JSONResponse(function_json(fn, app.id, True))


async def resume_function(request: Request) -> Response:
    """Resume: held runs run in the order they were queued."""
    require_api_token(request)
    fn = _function(request)
    app = stepline_app(request)
    await app.resume_function(fn.id)
    return JSONResponse(function_json(fn, app.id, False))


async def _paused(request: Request) -> set[str]:
    app = stepline_app(request)
    engine = app.engine
    return await engine.read(engine.store.paused_functions, app.id)
