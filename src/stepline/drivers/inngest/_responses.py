"""An SDK's reply to an execution request, classified as the Go server does.

* 200: the run finished; the body is the function's output (any JSON).
* 206: ops (a JSON array; a single object and ``[]`` are accepted too).
* 201: a streamed reply (``streaming="force"``): keep-alive spaces, then one object
  ``{"status", "headers", "body"}`` holding the real reply, which is read instead.
* any other status: the function failed; the body is its error (``{name, message, stack,
  code?}``). It is retried unless ``X-Inngest-No-Retry: true``; ``Retry-After`` (an ISO date,
  Python, or whole seconds, JS) sets the earliest retry, clamped to 1 s .. 24 h from now.
* a 2xx without ``X-Inngest-SDK`` did not come from an SDK: ``ProtocolError`` (as Go, the
  driver counts it as a failed attempt).

A streamed reply's signature covers only the placeholder body ``null`` (the Python SDK signs
the 201 before the reply exists), so a server that verifies replies cannot verify a streamed
one's content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from stepline._text import is_digits
from stepline.drivers.inngest._errors import ProtocolError
from stepline.drivers.inngest._opcodes import ErrorInfo, Op, read_op
from stepline.durations import parse_instant
from stepline.errors import DurationError

MIN_RETRY_DELAY = timedelta(seconds=1)
MAX_RETRY_DELAY = timedelta(hours=24)
MAX_OPS = 1000  # Inngest's DefaultMaxStepLimit


@dataclass(frozen=True)
class RunCompleted:
    """HTTP 200: the function returned ``output``."""

    output: Any


@dataclass(frozen=True)
class OpsReported:
    """HTTP 206: what the function did or asks for, in reply order."""

    ops: tuple[Op, ...]


@dataclass(frozen=True)
class FunctionErrored:
    """A non-2xx reply: the function (not one step) failed with ``error``."""

    error: ErrorInfo


@dataclass(frozen=True)
class SdkReply:
    """A classified reply. ``no_retry``: ``X-Inngest-No-Retry: true`` (a ``StepErrorOp`` or a
    function error is final at once); ``retry_at``: from ``Retry-After``; ``request_version``:
    the SDK's ``X-Inngest-Req-Version`` (echoed in later requests)."""

    status: int
    outcome: RunCompleted | OpsReported | FunctionErrored
    no_retry: bool = False
    retry_at: datetime | None = None
    request_version: int | None = None
    sdk: str | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``name``'s value in ``headers`` whose names are lower-cased."""
    return headers.get(name.lower())


def _json(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from exc


def retry_at(value: str | None, now: datetime) -> datetime | None:
    """A ``Retry-After`` value (whole seconds or a date) as a time clamped to 1 s .. 24 h
    after ``now``; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if is_digits(text) and len(text) <= 7:
        moment = now + timedelta(seconds=int(text))
    else:
        try:
            moment = parse_instant(text)
        except DurationError:
            try:
                moment = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
    return min(max(moment, now + MIN_RETRY_DELAY), now + MAX_RETRY_DELAY)


def parse_reply(status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> SdkReply:
    """Classify an SDK's reply (``now``: aware UTC, for relative times). Raises
    ``ProtocolError`` for a reply that is not one an SDK sends."""
    if status == 201:
        wrapper = _json(body.strip() or b"null", "streamed reply")
        if not isinstance(wrapper, dict) or not isinstance(wrapper.get("status"), int):
            raise ProtocolError("streamed reply without a status")
        inner = wrapper.get("body")
        inner_headers = {**headers, **(wrapper.get("headers") or {})}
        raw = inner.encode() if isinstance(inner, str) else json.dumps(inner).encode()
        return parse_reply(wrapper["status"], inner_headers, raw, now)
    headers = {name.lower(): value for name, value in headers.items()}
    sdk = _header(headers, "X-Inngest-SDK")
    no_retry = (_header(headers, "X-Inngest-No-Retry") or "").strip().lower() == "true"
    when = retry_at(_header(headers, "Retry-After"), now)
    version_text = (_header(headers, "X-Inngest-Req-Version") or "").strip()
    version = int(version_text) if is_digits(version_text.removeprefix("-")) else None
    outcome: RunCompleted | OpsReported | FunctionErrored
    if 200 <= status < 300:
        if sdk is None:
            raise ProtocolError(f"a {status} reply without X-Inngest-SDK: not from an SDK")
        if status == 206:
            value = _json(body, "206 reply") if body.strip() else []
            items = value if isinstance(value, list) else [value]
            if len(items) > MAX_OPS:
                raise ProtocolError(f"{len(items)} ops in one reply (at most {MAX_OPS})")
            outcome = OpsReported(tuple(read_op(item, now) for item in items))
        elif status == 200:
            outcome = RunCompleted(_json(body, "200 reply") if body.strip() else None)
        else:
            raise ProtocolError(f"unexpected status {status} from the SDK")
    else:
        try:
            value = _json(body, f"{status} reply") if body.strip() else None
        except ProtocolError:
            value = body.decode("utf-8", "replace")
        error = ErrorInfo.read(value)
        if not isinstance(value, dict) or not error.message:
            error = ErrorInfo(
                name=error.name, message=f"invalid status code: {status}", raw=error.raw
            )
        outcome = FunctionErrored(error)
    return SdkReply(status, outcome, no_retry, when, version, sdk)
