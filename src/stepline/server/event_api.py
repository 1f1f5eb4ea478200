"""``POST /e/{key}``: Inngest's event API, so existing senders (the Inngest SDKs, curl) work.

The body is one event or a list of them; the answer is ``{"ids": [...], "status": 200}`` once
they are committed (each request's ingest is one job of the group-commit writer: concurrent
requests share transactions and fsyncs). Every event is checked first; at the first invalid
one the events before it are ingested and the answer is ``400 {"ids": [their ids], "status":
400, "error": "event at index 2 ('order/created'): data must be an object, got a string",
"index": 2}``. An ``X-Inngest-Event-Id-Seed`` header (``<unix ms>,<base64 of 10 bytes>``, as the
SDKs send) makes the ids deterministic: the event at position n (1-based) gets the ULID of that
time with n added to the seed's last 4 bytes (Inngest's ``SeededIDFromString``), and an event
whose id is already stored (the client retrying the same request) is not ingested again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline._ids import seeded_id
from stepline.engine.engine import Engine
from stepline.errors import EventError, StoreError, StoreUnavailable
from stepline.sdk.event import Event
from stepline.server._body import check_json_content_type, parse_json, read_body
from stepline.server._problems import Problem
from stepline.server._responses import JSONResponse
from stepline.server._state import server_settings, stepline_app
from stepline.server.settings import ServerSettings
from stepline.store.records import EventRecord

SEED_HEADER = "x-inngest-event-id-seed"
RESERVED_PREFIX = "inngest/"


def event_routes() -> list[BaseRoute]:
    """The event API (POST only: sending is a side effect)."""
    return [Route("/e/{key}", send_events, methods=["POST"])]


def check_event_key(request: Request, settings: ServerSettings) -> None:
    """401 for a key that is not configured; 503 when no keys are and the API is not open."""
    key = request.path_params["key"]
    if settings.event_keys:
        if not settings.event_key_ok(key):
            raise Problem(401, "Event key not found")
    elif not settings.allow_unauthenticated:
        raise Problem(503, "no event keys are configured on this server: set STEPLINE_EVENT_KEYS")


async def send_events(request: Request) -> Response:
    """Ingest one event or a list; see the module's doc."""
    settings = server_settings(request)
    check_event_key(request, settings)
    check_json_content_type(request)
    body = parse_json(await read_body(request, settings.max_body_bytes), settings.max_json_depth)
    if isinstance(body, dict):
        items: list[Any] = [body]
    elif isinstance(body, list):
        items = body
    else:
        raise Problem(400, f"expected an event object or a list of events, got {kind(body)}")
    if len(items) > settings.max_batch_events:
        raise Problem(
            413,
            f"{len(items)} events in one request, over the limit of {settings.max_batch_events}",
        )
    engine = stepline_app(request).engine
    now = engine.clock.now()
    internal_ids = seeded_ids(request.headers.get(SEED_HEADER), len(items))
    records: list[EventRecord] = []
    problem: Problem | None = None
    for index, item in enumerate(items):
        try:
            event = event_from_json(item)
            given = internal_ids[index] if internal_ids is not None else None
            records.append(engine.event_record(event, now, given))  # validates it
        except EventError as exc:
            name = item.get("name") if isinstance(item, dict) else None
            named = f" ({name!r})" if isinstance(name, str) and name else ""
            problem = Problem(400, f"event at index {index}{named}: {exc}", index=index)
            break
    ids = await _ingest(engine, records, now, retried=internal_ids is not None)
    if problem is not None:
        raise Problem(problem.status, problem.message, ids=ids, **problem.extra)
    return JSONResponse({"ids": ids, "status": 200})


async def _ingest(
    engine: Engine, records: list[EventRecord], now: float, *, retried: bool
) -> list[str]:
    if not records:
        return []
    try:
        results = await engine.ingest_records(records, now, retried=retried)
    except StoreUnavailable as exc:
        raise Problem(503, f"events not stored: {exc}", headers={"Retry-After": "1"}) from None
    except StoreError as exc:
        raise Problem(503, f"events not stored: {exc}") from None
    return [r.internal_id for r in results]


def seeded_ids(seed: str | None, count: int) -> list[str] | None:
    """The ids a seed header gives ``count`` events, or None (no seed, or not a valid one:
    the events get fresh ids, as Inngest's server does)."""
    if not seed:
        return None
    millis_text, sep, entropy_text = seed.partition(",")
    if not sep or not millis_text.isascii() or not millis_text.isdigit():
        return None
    millis = int(millis_text)
    try:
        entropy = base64.b64decode(entropy_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not 0 < millis < 1 << 48 or len(entropy) != 10:
        return None
    head, counter = entropy[:6], int.from_bytes(entropy[6:], "big")
    return [
        seeded_id(millis, head + ((counter + position) & 0xFFFFFFFF).to_bytes(4, "big"))
        for position in range(1, count + 1)
    ]


def event_from_json(item: Any) -> Event:
    """An ``Event`` from one JSON event of the API; ``EventError`` saying what is wrong (the
    engine's ``event_record`` checks the rest: name length, ``ts`` range, size).

    ``name`` is required and may not start with ``inngest/`` (reserved); ``data`` and ``user``
    are objects (absent or null: ``{}``; ``data._inngest`` is dropped, as Inngest's server
    does); ``id`` a string (absent, null or "": none); ``ts`` epoch milliseconds between 1980
    and 2100 (absent, null or 0: when received). Other fields (``v``) are ignored."""
    if not isinstance(item, dict):
        raise EventError(f"expected an event object, got {kind(item)}")
    name = item.get("name")
    if name is None or name == "":
        raise EventError("event name is empty")
    if not isinstance(name, str):
        raise EventError(f"event name must be a string, got {kind(name)}")
    if name.startswith(RESERVED_PREFIX):
        raise EventError(f"event names starting with {RESERVED_PREFIX!r} are reserved")
    data = _object(item, "data")
    if "_inngest" in data:
        data = {k: v for k, v in data.items() if k != "_inngest"}
    user = _object(item, "user")
    sender_id = item.get("id")
    if sender_id == "":
        sender_id = None
    if sender_id is not None and not isinstance(sender_id, str):
        raise EventError(f"id must be a string, got {kind(sender_id)}")
    ts = item.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        raise EventError(f"ts must be epoch milliseconds (a number), got {kind(ts)}")
    return Event(name=name, data=data, id=sender_id, ts=int(ts) if ts else None, user=user)


def _object(item: dict[str, Any], field: str) -> dict[str, Any]:
    value = item.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{field} must be an object, got {kind(value)}")
    return value


def kind(value: Any) -> str:
    """A JSON value's kind, for messages."""
    if value is None:
        return "null"
    kinds: Sequence[tuple[type, str]] = (
        (bool, "a boolean"),
        (str, "a string"),
        (int, "a number"),
        (float, "a number"),
        (list, "an array"),
        (dict, "an object"),
    )
    return next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)
