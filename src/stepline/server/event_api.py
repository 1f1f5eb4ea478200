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

This is the server's hot path, so ``EventApi`` is a plain ASGI application: ``create_app``'s
application hands it ``POST /e/{key}`` before Starlette's middleware and routing (it writes
its own access-log line and turns its own errors into responses), it reads the headers it needs
from the scope, and it builds each ``EventRecord`` straight from the parsed JSON
(``record_from_json``: the checks of ``Engine.event_record`` with the same messages, without
the exactness walk that values decoded by orjson cannot fail, and the ``data`` it encodes to
measure the event is the one the store keeps).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from stepline._ids import new_id, seeded_id
from stepline._text import is_digits
from stepline.engine.engine import Engine
from stepline.errors import EventError, StoreError, StoreRefusedValue, StoreUnavailable
from stepline.sdk.event import (
    check_event_id,
    check_event_name,
    check_event_size,
    check_event_ts,
    check_event_version,
)
from stepline.server._access_log import log as access_log
from stepline.server._access_log import log_request
from stepline.server._body import (
    check_declared_length,
    check_json_headers,
    parse_json,
    receive_body,
)
from stepline.server._problems import Problem, store_failure_text
from stepline.server.settings import ServerSettings
from stepline.store.records import EventRecord

if TYPE_CHECKING:
    from stepline.sdk.app import App

SEED_HEADER = "x-inngest-event-id-seed"
RESERVED_PREFIX = "inngest/"
PREFIX = "/e/"
INTERNAL_ERROR = b'{"error":"internal server error","status":500}'
_JSON_HEADERS = [(b"content-type", b"application/json")]


class EventApi:
    """The ASGI application of ``POST /e/{key}`` (the key in ``scope["path_params"]``)."""

    def __init__(self, app: App, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self.level = logging.DEBUG if settings.dev else logging.INFO

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        try:
            status, body, headers = await self._answer(scope, receive)
            await _respond(send, status, body, headers)
        except ClientDisconnect:
            status = 499  # logged only: nobody is there to answer
        except Exception:  # a bug of ours: answered 500 and raised to the server, which logs it
            status = 500
            await _respond(send, 500, INTERNAL_ERROR, None)
            raise
        finally:
            if access_log.isEnabledFor(self.level):
                log_request(scope, status, started, self.level)

    async def _answer(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, dict[str, str] | None]:
        try:
            ids = await self.send_events(scope, receive)
        except Problem as problem:
            answer = {"error": problem.message, "status": problem.status, **problem.extra}
            return problem.status, orjson.dumps(answer), problem.headers
        return 200, orjson.dumps({"ids": ids, "status": 200}), None

    async def send_events(self, scope: Scope, receive: Receive) -> list[str]:
        """Ingest one event or a list; see the module's doc. Raises ``Problem``."""
        settings = self.settings
        check_event_key(scope["path_params"]["key"], settings)
        headers = _headers(scope)
        check_json_headers(headers.get("content-type"), headers.get("content-encoding"))
        check_declared_length(headers.get("content-length"), settings.max_body_bytes)
        body = parse_json(
            await receive_body(receive, settings.max_body_bytes), settings.max_json_depth
        )
        if type(body) is dict:
            items: list[Any] = [body]
        elif type(body) is list:
            items = body
        else:
            raise Problem(400, f"expected an event object or a list of events, got {kind(body)}")
        limit = settings.max_batch_events
        if len(items) > limit:
            raise Problem(413, f"{len(items)} events in one request, over the limit of {limit}")
        engine = self.app.engine
        now = engine.clock.now()
        internal_ids = seeded_ids(headers.get(SEED_HEADER), len(items))
        max_bytes = engine.limits.max_event_bytes
        records: list[EventRecord] = []
        problem: Problem | None = None
        for index, item in enumerate(items):
            try:
                given = internal_ids[index] if internal_ids is not None else None
                records.append(record_from_json(item, now, given, max_bytes))
            except EventError as exc:
                name = item.get("name") if isinstance(item, dict) else None
                named = f" ({name!r})" if isinstance(name, str) and name else ""
                problem = Problem(400, f"event at index {index}{named}: {exc}", index=index)
                break
        ids = await _ingest(engine, records, now, retried=internal_ids is not None)
        if problem is not None:
            raise Problem(problem.status, problem.message, ids=ids, **problem.extra)
        return ids


def event_routes(api: EventApi) -> list[BaseRoute]:
    """The event API (POST only: sending is a side effect). ``create_app`` serves these
    requests before routing (``event_key_in``); the route is what routing answers otherwise
    (405 to any other method) and what lists the server's routes."""
    return [Route("/e/{key}", api, methods=["POST"])]


def event_key_in(path: str) -> str | None:
    """The key of an event API path (``/e/{key}``), or None for any other path."""
    if not path.startswith(PREFIX):
        return None
    key = path[len(PREFIX) :]
    return key if key and "/" not in key else None


def check_event_key(key: str, settings: ServerSettings) -> None:
    """401 for a key that is not configured; 503 when no keys are and the API is not open."""
    if settings.events_keyed():
        if not settings.event_key_ok(key):
            raise Problem(401, "Event key not found")
    elif not settings.allow_unauthenticated:
        raise Problem(503, "no event keys are configured on this server: set STEPLINE_EVENT_KEYS")


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers (latin-1, as Starlette decodes them; a repeated one: the last)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str] | None) -> None:
    head = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if headers:
        head += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _ingest(
    engine: Engine, records: list[EventRecord], now: float, *, retried: bool
) -> list[str]:
    if not records:
        return []
    try:
        results = await engine.ingest_records(records, now, retried=retried)
    except StoreUnavailable as exc:
        text = store_failure_text("events not stored", exc)
        raise Problem(503, text, headers={"Retry-After": "1"}) from None
    except StoreRefusedValue as exc:  # a value of these events the store cannot hold: a 400,
        # as sent again they are refused again
        raise Problem(400, store_failure_text("events not stored", exc)) from None
    except StoreError as exc:
        raise Problem(503, store_failure_text("events not stored", exc)) from None
    return [r.internal_id for r in results]


def seeded_ids(seed: str | None, count: int) -> list[str] | None:
    """The ids a seed header gives ``count`` events, or None (no seed, or not a valid one:
    the events get fresh ids, as Inngest's server does)."""
    if not seed:
        return None
    millis_text, sep, entropy_text = seed.partition(",")
    if not sep or not is_digits(millis_text):
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


def record_from_json(item: Any, now: float, internal_id: str | None, max_bytes: int) -> EventRecord:
    """The ``EventRecord`` of one JSON event of the API (decoded by orjson), received at
    ``now``, with ``internal_id`` (else a new id); ``EventError`` saying what is wrong.

    ``name`` is required, a string of at most 255 characters not starting with a space, nor
    with ``inngest/`` (reserved); ``data`` and ``user`` are objects (absent or null: ``{}``;
    ``data._inngest`` is dropped, as Inngest's server does); ``id`` a string (absent, null or
    "": none); ``ts`` epoch milliseconds between 1980 and 2100 (absent, null or 0: when
    received); ``v`` a string (absent, null or "": none), kept with the event; ``data`` and
    ``user`` encoded within ``max_bytes``. Other fields are ignored."""
    if type(item) is not dict:
        raise EventError(f"expected an event object, got {kind(item)}")
    name = item.get("name")
    if name is None or name == "":
        raise EventError("event name is empty")
    if type(name) is not str:
        raise EventError(f"event name must be a string, got {kind(name)}")
    if name.startswith(RESERVED_PREFIX):
        raise EventError(f"event names starting with {RESERVED_PREFIX!r} are reserved")
    check_event_name(name)
    data = _object(item, "data")
    if "_inngest" in data:
        data = {k: v for k, v in data.items() if k != "_inngest"}
    user = _object(item, "user")
    sender_id = _optional_text(item, "id", name, check_event_id)
    ts = item.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        raise EventError(f"ts must be epoch milliseconds (a number), got {kind(ts)}")
    millis = int(ts) if ts else 0  # 0, like none, means "when received" (as in Inngest)
    if millis:
        check_event_ts(name, millis)
    v = _optional_text(item, "v", name, check_event_version)
    try:  # values decoded by orjson encode back to themselves (serde's rule holds)
        data_json = orjson.dumps(data)
        size = len(data_json) + (len(orjson.dumps(user)) if user else 2)
    except orjson.JSONEncodeError as exc:  # cannot happen for decoded JSON; never a 500
        raise EventError(f"data cannot be stored: {exc}") from None
    check_event_size(name, size, max_bytes)
    return EventRecord(
        internal_id or new_id(now),
        name,
        data,
        user,
        sender_id,
        millis / 1000 if millis else now,
        data_json,
        v,
    )


def _optional_text(
    item: dict[str, Any], field: str, name: str, check: Callable[[str, str], object]
) -> str | None:
    """``item``'s optional string ``field`` ("" is none, as Inngest's omitempty), checked by
    ``check(name, value)``."""
    value = item.get(field)
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise EventError(f"{field} must be a string, got {kind(value)}")
    check(name, value)
    return value


def _object(item: dict[str, Any], field: str) -> dict[str, Any]:
    value = item.get(field)
    if value is None:
        return {}
    if type(value) is not dict:
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
