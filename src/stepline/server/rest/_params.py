"""Query parameters and JSON bodies of the REST API: parsed strictly, 400 naming the problem."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from stepline._cursor import decode_cursor
from stepline._text import is_digits
from stepline.server._body import check_json_content_type, parse_json, read_body
from stepline.server._problems import Problem
from stepline.server._state import server_settings

MAX_LIMIT = 1000
MAX_BODY = 64 * 1024  # the REST API's JSON bodies are small commands


def limit_param(request: Request, default: int = 50) -> int:
    """``limit`` (1-1000)."""
    return count_param(request, "limit", default, MAX_LIMIT)


def count_param(request: Request, name: str, default: int, most: int) -> int:
    """A whole number from 1 to ``most``."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not is_digits(text) or not 1 <= int(text) <= most:
        raise Problem(400, f"{name} must be a whole number from 1 to {most}, got {text!r}")
    return int(text)


def time_param(request: Request, name: str) -> datetime | None:
    """A time: ISO 8601 (``2026-05-01T12:00:00Z``; without an offset, UTC) or epoch
    milliseconds."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    return parse_time(text, name)


def parse_time(text: Any, name: str) -> datetime:
    """A time in a parameter or a body (see ``time_param``); 400 if it is none."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return _from_millis(float(text), name)
    if isinstance(text, str):
        if is_digits(text):
            return _from_millis(float(text), name)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise Problem(400, f"{name} must be an ISO 8601 time or epoch milliseconds, got {text!r}")


def _from_millis(millis: float, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise Problem(400, f"{name}: {millis} is not a time in epoch milliseconds") from None


def flag_param(request: Request, name: str, default: bool) -> bool:
    """A boolean: true/false, 1/0."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise Problem(400, f"{name} must be true or false, got {text!r}")


def cursor_param(request: Request) -> tuple[float, str] | None:
    """The ``cursor`` a previous page gave (``next_cursor``)."""
    text = request.query_params.get("cursor")
    if not text:
        return None
    try:
        return decode_cursor(text)
    except ValueError as exc:
        raise Problem(400, str(exc)) from None


async def json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object (``optional``: an empty body is ``{}``)."""
    settings = server_settings(request)
    body = await read_body(request, min(MAX_BODY, settings.max_body_bytes))
    if optional and not body.strip():
        return {}
    check_json_content_type(request)
    value = parse_json(body, settings.max_json_depth)
    if not isinstance(value, dict):
        raise Problem(400, "the request body must be a JSON object")
    return value


def text_field(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string field of a body."""
    value = body.get(name)
    if value is None:
        if required:
            raise Problem(400, f"{name} is required")
        return None
    if not isinstance(value, str) or not value:
        raise Problem(400, f"{name} must be a non-empty string")
    return value
