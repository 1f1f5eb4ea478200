"""``create_app``: the server's ASGI application, composed of its parts.

Routes, in the order they are matched: the probes (``/health``, ``/ready``), the event API
(``POST /e/{key}``), the Inngest SDK routes (``/fn/register``, ``/dev``), Inngest's REST API
(``/v1/events``, ``/v1/runs``) and Inngest's dev-server read API (``POST /v0/gql``), the REST
API (``/api/v1/...``, ``/openapi.json``, ``/api/docs``), ``/metrics``, then the dashboard at
``/`` when ``stepline.server.dashboard`` is installed: its ``dashboard_routes(app, settings) ->
list[BaseRoute]`` are appended last, so they see every
path the APIs above do not answer (a dashboard needing middleware returns
``[Mount("", routes=..., middleware=...)]``).

The application serves an ``App`` through its public verbs only; it runs no worker (``stepline
dev`` and ``stepline server`` run one beside it, see ``stepline.server.serve``).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from stepline.errors import StoreError
from stepline.server._access_log import AccessLog
from stepline.server._health import health_routes
from stepline.server._nul_guard import RefuseNul
from stepline.server._problems import Problem, problem_response, store_error_response
from stepline.server._responses import JSONResponse
from stepline.server.event_api import EventApi, event_key_in, event_routes
from stepline.server.gql import gql_routes
from stepline.server.inngest_api import inngest_routes
from stepline.server.inngest_rest import inngest_rest_routes
from stepline.server.inngest_runs import inngest_run_routes
from stepline.server.metrics import metrics_routes
from stepline.server.openapi import openapi_routes
from stepline.server.rest import rest_routes
from stepline.server.settings import ServerSettings

if TYPE_CHECKING:
    from stepline.sdk.app import App

DASHBOARD_MODULE = "stepline.server.dashboard"


def create_app(app: App, settings: ServerSettings | None = None) -> Starlette:
    """The ASGI application serving ``app`` (default settings: ``ServerSettings()``, which
    leave the APIs closed until keys are configured)."""
    settings = settings or ServerSettings()
    events = EventApi(app, settings)
    routes: list[BaseRoute] = [
        *health_routes(),
        *event_routes(events),
        *inngest_routes(),
        *inngest_rest_routes(),
        *inngest_run_routes(),
        *gql_routes(),
        *rest_routes(),
        *metrics_routes(),
        *openapi_routes(),
    ]
    dashboard = dashboard_routes(app, settings)
    routes += dashboard or [Route("/", _index, methods=["GET"])]
    level = logging.DEBUG if settings.dev else logging.INFO
    server = _Server(
        events,
        routes=routes,
        middleware=[Middleware(AccessLog, level=level), Middleware(RefuseNul)],
        exception_handlers={Problem: problem_response, StoreError: store_error_response},
    )
    server.state.stepline_app = app
    server.state.stepline_settings = settings
    return server


class _Server(Starlette):
    """Starlette, with ``POST /e/{key}`` (the hot path) handed to the event API before the
    middleware stack and the routing: the event API logs and answers its errors itself."""

    def __init__(self, events: EventApi, **options: Any) -> None:
        super().__init__(**options)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            key = event_key_in(route_path(scope))
            if key is not None:
                scope["app"] = self
                scope["path_params"] = {"key": key}
                await self._events(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The request's path below the application's mount point (``root_path``), as Starlette's
    router matches it (its ``get_route_path``, private to Starlette, hence this copy)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def dashboard_routes(app: App, settings: ServerSettings) -> list[BaseRoute]:
    """The dashboard's routes, or none when ``stepline.server.dashboard`` is not there."""
    try:
        module = importlib.import_module(DASHBOARD_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != DASHBOARD_MODULE:
            raise
        return []
    routes: list[BaseRoute] = module.dashboard_routes(app, settings)
    return routes


async def _index(request: Request) -> Response:
    """What this server offers (when no dashboard is installed)."""
    return JSONResponse(
        {"name": "stepline", "api": "/api/v1", "openapi": "/openapi.json", "docs": "/api/docs"}
    )
