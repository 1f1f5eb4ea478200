"""``Problem``: an HTTP error a handler raises; ``create_app`` turns it into the JSON error body
``{"error": ..., "status": N, ...}`` (see ``_responses.error``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stepline.server._responses import error


class Problem(Exception):
    """A request the server refuses: ``status`` (4xx, or 503 when the store is unavailable),
    ``message`` saying what is wrong, ``extra`` fields for the body, ``headers``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


async def problem_response(request: Request, exc: Exception) -> Response:
    """The response of a ``Problem`` (an exception handler of the Starlette application)."""
    assert isinstance(exc, Problem)
    response = error(exc.status, exc.message, **exc.extra)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
