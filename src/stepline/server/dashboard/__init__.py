"""The dashboard: server-rendered pages (Jinja2), a small script, live updates over SSE.

``dashboard_routes(app, settings)`` gives the routes ``create_app`` mounts at ``/``. Templates
and static files ship inside the package (no CDN). See ``docs/dashboard.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from stepline.server.dashboard._auth import Guard
from stepline.server.dashboard._event_pages import EventPages
from stepline.server.dashboard._pages import Dashboard
from stepline.server.settings import ServerSettings

if TYPE_CHECKING:
    from starlette.requests import Request

    from stepline.sdk.app import App

__all__ = ["dashboard_routes"]


def dashboard_routes(app: App, settings: ServerSettings) -> list[BaseRoute]:
    """The dashboard's routes for ``app`` (pages are GET, every action is a CSRF-checked
    POST; a login is required unless ``settings`` is the development server on loopback)."""
    board = Dashboard(app, Guard(settings))
    events = EventPages(board)
    page, action = board.page, board.action

    async def index(request: Request) -> Response:
        return RedirectResponse("/runs", 303)

    return [
        Route("/", index, methods=["GET"]),
        Route("/login", board.login_page, methods=["GET"]),
        Route("/login", board.login, methods=["POST"]),
        Route("/logout", action(board.logout), methods=["POST"]),
        Route("/functions", page(board.functions), methods=["GET"]),
        Route("/functions/{function_id:path}/pause", action(board.pause), methods=["POST"]),
        Route("/functions/{function_id:path}/resume", action(board.resume), methods=["POST"]),
        Route("/runs", page(board.runs), methods=["GET"]),
        Route("/runs/bulk", action(board.bulk), methods=["POST"]),
        Route("/runs/{run_id}", page(board.run_page), methods=["GET"]),
        Route("/runs/{run_id}/export", page(board.export_run), methods=["GET"]),
        Route("/runs/{run_id}/steps/{step_id:path}", page(board.step_body), methods=["GET"]),
        Route("/runs/{run_id}/cancel", action(board.cancel), methods=["POST"]),
        Route("/runs/{run_id}/replay", action(board.replay), methods=["POST"]),
        Route("/events", page(events.events), methods=["GET"]),
        Route("/events/{event_id}", page(events.event_page), methods=["GET"]),
        Route("/send", page(events.send_page), methods=["GET"]),
        Route("/send", action(events.send), methods=["POST"]),
        Route("/live", page(board.live), methods=["GET"]),
        Mount(
            "/static",
            StaticFiles(packages=[("stepline.server.dashboard", "static")]),
            name="dashboard-static",
        ),
    ]
