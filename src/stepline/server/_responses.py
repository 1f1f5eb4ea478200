"""JSON responses (orjson) and the one shape of every API error: ``{"error": ..., "status": N}``."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    """A JSON response encoded with orjson (non-JSON values are a bug of ours: they raise)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """An error response: ``{"error": message, "status": status, ...extra}``."""
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)
