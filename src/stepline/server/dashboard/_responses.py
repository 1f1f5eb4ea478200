"""The dashboard's small answers: an action's JSON or redirect, its errors, and the names and
paths it echoes back made safe."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response


def wants_json(request: Request) -> bool:
    """Whether the caller (the page's script) asked for JSON."""
    return "application/json" in request.headers.get("accept", "")


def succeeded(request: Request, redirect: str, result: dict[str, Any]) -> Response:
    """An action's success: JSON for the page's script, else a redirect."""
    if wants_json(request):
        return Response(orjson.dumps({"ok": True, **result}), media_type="application/json")
    return RedirectResponse(redirect, 303)


def json_or_text(body: dict[str, Any], status: int) -> Response:
    """An action's error, as JSON."""
    return Response(orjson.dumps(body), status, media_type="application/json")


def safe_next(target: str | None) -> str:
    """A local path to go back to after the login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def safe_name(text: str) -> str:
    """``text`` made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:100]
