"""The HTTP server: the event API, the REST API, health and metrics, and the dashboard.

``create_app(app, settings)`` is the ASGI application (also ``App.asgi()``); ``stepline dev`` and
``stepline server`` serve it with uvicorn beside a worker (``HttpServer``).
"""

from stepline.server.app import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings

__all__ = ["HttpServer", "ServerSettings", "create_app"]
