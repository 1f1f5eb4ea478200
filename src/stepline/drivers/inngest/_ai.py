"""``step.ai.infer`` (the ``AIGateway`` op): the server, not the app, makes the model call the
SDK describes, so the app spends no compute while the model answers.

The request is a ``POST`` of the op's ``body`` (JSON) to its ``url``, authenticated as
Inngest's server does by ``format``: ``gemini`` puts the key in the ``key`` query parameter,
``bedrock`` sends it as the whole ``Authorization`` header, ``anthropic`` as ``x-api-key``,
every other format (``openai-chat``, ...) as ``Authorization: Bearer <key>``; the op's own
``headers`` are set last. A 2xx reply whose body is JSON is the step's output (memoized as
``{"data": ...}``); any other reply is a failed attempt of the step (``AIGatewayError``).
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from stepline.drivers.inngest._opcodes import AIGatewayOp

AI_TIMEOUT = 600.0  # seconds a model call may take
AI_ERROR = "AIGatewayError"


@dataclass(frozen=True)
class AIRequest:
    """The HTTP request an ``AIGateway`` op asks for."""

    url: str
    headers: dict[str, str]
    body: bytes


def ai_request(op: AIGatewayOp) -> AIRequest:
    """The model call of ``op``, authenticated by its format."""
    url = op.url
    headers = {"Content-Type": "application/json"}
    key = op.auth_key or ""
    if op.format == "gemini":
        parts = urlsplit(url)
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("key", key)]
        url = urlunsplit(parts._replace(query=urlencode(query)))
    elif op.format == "bedrock":
        headers["Authorization"] = key
    elif op.format == "anthropic":
        headers["x-api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"
    headers.update(op.headers)
    return AIRequest(url, headers, orjson.dumps(op.body))


def ai_output(status: int, body: bytes) -> tuple[Any, str | None]:
    """The step's output of a model reply, or None and why the call failed."""
    if not 200 <= status <= 299:
        return None, f"unsuccessful status code: {status}: {_excerpt(body)}"
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        return None, f"the reply is not JSON: {_excerpt(body)}"


def _excerpt(body: bytes, limit: int = 2000) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."
