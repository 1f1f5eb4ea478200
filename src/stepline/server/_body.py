"""Reading a request's JSON body within limits, refusing what is wrong before it costs much.

The body is read as it streams in and refused (413) as soon as it passes ``max_bytes`` (a
declared ``Content-Length`` over it is refused before reading anything). The JSON is parsed by
orjson (invalid UTF-8, lone surrogates, ``NaN``, numbers overflowing a double: 400), then
checked for nesting deeper than ``max_depth`` and integers outside 64 bits (which a parser
would silently turn into inexact floats): 400.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from stepline.server._problems import Problem

_JSON_TYPES = ("application/json",)
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1  # orjson reads these as ints, beyond as floats
BIG_FLOAT = float(1 << 63)


def check_json_content_type(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``*/*+json``; a request
    without a Content-Type is read as JSON) and not compressed."""
    check_json_headers(request.headers.get("content-type"), request.headers.get("content-encoding"))


def check_json_headers(content_type: str | None, content_encoding: str | None) -> None:
    """``check_json_content_type`` over the two headers' values (None: absent)."""
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES and not media.endswith("+json"):
            raise Problem(415, f"expected Content-Type application/json, got {media or '(empty)'}")
    if content_encoding is not None:
        encoding = content_encoding.strip().lower()
        if encoding not in ("identity", ""):
            raise Problem(415, f"Content-Encoding {encoding} is not supported: send identity")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, read chunk by chunk; 413 as soon as it passes ``max_bytes``."""
    check_declared_length(request.headers.get("content-length"), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Problem(413, f"request body is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def check_declared_length(declared: str | None, max_bytes: int) -> None:
    """400 for a Content-Length that is not a number, 413 for one over ``max_bytes``."""
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise Problem(400, f"invalid Content-Length {declared!r}") from None
    if length > max_bytes:
        raise Problem(413, f"request body of {length} bytes is over the {max_bytes}-byte limit")


async def receive_body(receive: Receive, max_bytes: int) -> bytes:
    """``read_body`` for a raw ASGI handler: the ``http.request`` messages' bodies; 413 as soon
    as they pass ``max_bytes``; a client that disconnects ends the request (``ClientDisconnect``).
    One message (the common case: uvicorn hands a small body over whole) is not copied."""
    first = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise Problem(413, f"request body is over the {max_bytes}-byte limit")
            if chunks is not None:
                chunks.append(chunk)
            elif first:
                chunks = [first, chunk]
            else:
                first = chunk
        if not message.get("more_body", False):
            return b"".join(chunks) if chunks is not None else first


def parse_json(body: bytes, max_depth: int) -> Any:
    """The JSON value of ``body``; 400 naming what is wrong with it."""
    if not body.strip():
        raise Problem(400, "the request body is empty: expected JSON")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"invalid JSON: {exc}") from None
    depth, big_float = inspect_json(value, max_depth)
    if depth > max_depth:
        raise Problem(400, f"JSON nested deeper than {max_depth} levels")
    if big_float:  # maybe an integer literal past 64 bits that orjson made a float
        _check_integers(body)
    return value


def inspect_json(value: Any, stop_after: int) -> tuple[int, bool]:
    """How deeply ``value`` nests lists and objects (a scalar: 0), counted up to just past
    ``stop_after`` (iterative: any depth is safe), and whether it holds a float of magnitude
    2**63 or more (orjson reads an integer literal past 64 bits as such a float)."""
    deepest = 0
    big_float = False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)  # orjson makes exactly dict, list, str, int, float, bool, None
        if kind is dict:
            children: Any = item.values()
        elif kind is list:
            children = item
        else:
            big_float = big_float or (kind is float and abs(item) >= BIG_FLOAT)
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > stop_after:
                return deepest, big_float
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth))
            elif kind is float and abs(child) >= BIG_FLOAT:
                big_float = True
    return deepest, big_float


def _check_integers(body: bytes) -> None:
    """400 for an integer literal outside 64 bits (orjson would make it an inexact float)."""

    def exact_int(text: str) -> int:
        number = int(text)
        if not INT_MIN <= number <= INT_MAX:
            raise Problem(400, f"integer {text[:40]} does not fit in 64 bits: send it as a string")
        return number

    try:
        json.loads(body, parse_int=exact_int)
    except RecursionError:  # cannot happen: the depth was checked; never a 500
        raise Problem(400, "JSON nested too deeply") from None
    except ValueError as exc:
        raise Problem(400, f"invalid JSON: {exc}") from None
