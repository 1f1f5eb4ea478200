"""The HTTP server: the event API, the REST API, health and metrics, and the dashboard.

``create_app(app, settings)`` is the ASGI application (also ``App.asgi()``); ``stepline dev`` and
``stepline server`` serve it with uvicorn beside a worker (``HttpServer``).

The three names are imported on first use (PEP 562): the CLI's commands that only read the
database use ``stepline.server.views`` and ``settings`` without loading Starlette, uvicorn and
GraphQL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepline.server.app import create_app
    from stepline.server.serve import HttpServer
    from stepline.server.settings import ServerSettings

__all__ = ["HttpServer", "ServerSettings", "create_app"]

_HOMES = {
    "create_app": "stepline.server.app",
    "HttpServer": "stepline.server.serve",
    "ServerSettings": "stepline.server.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stepline.server' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
