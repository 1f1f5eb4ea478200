"""What a request handler reaches: the ``App`` and the ``ServerSettings`` the server was made
with (kept on the Starlette application's state by ``create_app``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

from stepline.server.settings import ServerSettings

if TYPE_CHECKING:
    from stepline.sdk.app import App


def stepline_app(request: HTTPConnection) -> App:
    """The ``App`` this server serves."""
    return cast("App", request.app.state.stepline_app)


def server_settings(request: HTTPConnection) -> ServerSettings:
    """The server's settings."""
    return cast(ServerSettings, request.app.state.stepline_settings)
