"""``Problem``: an HTTP error a handler raises; ``create_app`` turns it into the JSON error body
``{"error": ..., "status": N, ...}`` (see ``_responses.error``)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stepline.errors import StoreError, StoreRefusedValue, StoreUnavailable
from stepline.server._repeated_warnings import RepeatedWarnings
from stepline.server._responses import error

log = logging.getLogger("stepline.server")
store_failures = RepeatedWarnings(log)  # one line a window per failure, not one per request


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


def store_failure_text(what: str, exc: StoreError) -> str:
    """The body text of a request a ``StoreError`` ended: ``what`` and the backend's reason,
    without the database's label (its host, port and name are the operator's to know: the
    event API answers anyone with an event key, ``/ready`` everyone). The whole error, label
    included, goes to the server's log: once per window of the same failure, its repeats
    counted (``store_failures``: an unavailable store fails every request until it is back)."""
    store_failures.warn((type(exc), exc.reason, exc.database), f"{what}: {exc}")
    if isinstance(exc, StoreUnavailable):
        return f"{what}: the store is unavailable: {exc.reason}; retry later"
    if isinstance(exc, StoreRefusedValue):
        return f"{what}: the store refused a value: {exc.reason}"
    return f"{what}: the store failed: {exc.reason}"


async def store_error_response(request: Request, exc: Exception) -> Response:
    """The response of a ``StoreError`` a handler let through (an exception handler of the
    Starlette application): 400 for a value of the request the store refused (PostgreSQL: a
    NUL in a path or a query, which its text cannot hold; was a 500), 503 (with
    ``Retry-After``) while the store is unavailable, 503 for another store failure."""
    assert isinstance(exc, StoreError)
    what = f"{request.method} {request.url.path}"
    if isinstance(exc, StoreRefusedValue):
        return error(400, store_failure_text(what, exc))
    response = error(503, store_failure_text(what, exc))
    if isinstance(exc, StoreUnavailable):
        response.headers["Retry-After"] = "1"
    return response
