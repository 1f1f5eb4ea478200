"""The execution request a server sends to an SDK app: ``POST <serve URL>?fnId=..&stepId=..``.

A request carries the run's first event, all its events (a batch), the memoized step results
(``steps``, keyed by hashed step id) and ``ctx``: run id, attempt (0-based, per queue item),
``max_attempts`` (retries + 1), the stack of completed step ids in completion order and
``disable_immediate_execution`` (after a parallel reply: plan steps, do not run them). The body
is sent as canonical JSON and signed as such. ``ctx.fn_id`` and ``ctx.qi_id`` are sent only on a
request that allows async checkpointing (``checkpoint``): a JS 4.x SDK then runs many steps in
the one request and reports each to ``POST /v1/checkpoint/{run_id}/async`` (echoing ``qi_id``);
without them every SDK replies as described in the protocol. Pure: no I/O, the time is a
parameter.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from stepline.drivers.inngest._canonical import canonical_json
from stepline.drivers.inngest._errors import ProtocolError
from stepline.drivers.inngest._signing import SIGNATURE_HEADER, SigningKey, signature

DISCOVERY = "step"  # the stepId of a request that targets no step: run until the next step
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # larger: the SDK fetches events and memo (``use_api``)


def hash_step_id(user_id: str, index: int = 0) -> str:
    """The id under which a step's result is memoized: SHA-1 hex of the user's step id, or of
    ``"<id>:<n>"`` for its n-th repeat within one run of the handler."""
    key = user_id if index == 0 else f"{user_id}:{index}"
    return hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()


def memo_data(value: Any) -> dict[str, Any]:
    """The memo of a step that returned ``value`` (``step.run``, an invoke, a sent event)."""
    return {"data": value}


def memo_error(name: str, message: str, stack: str | None = None) -> dict[str, Any]:
    """The memo of a step that failed for good: the SDK raises it in user code as a step
    error. ``name`` and ``message`` must be strings, or the SDKs would read it as data."""
    error: dict[str, Any] = {"name": str(name), "message": str(message)}
    if stack is not None:
        error["stack"] = stack
    return {"error": error}


def sdk_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event in the shape the SDKs validate: ``name``, ``data`` (an object), ``id`` (a
    string), ``ts`` (integer Unix milliseconds), ``user`` and ``v`` when present."""
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"event without a name: {payload!r}")
    data = payload.get("data")
    ts = payload.get("ts")
    event: dict[str, Any] = {
        "name": name,
        "data": data if isinstance(data, dict) else {},
        "id": str(payload.get("id") or ""),
        "ts": int(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else 0,
        "user": payload.get("user") if isinstance(payload.get("user"), dict) else {},
    }
    if isinstance(payload.get("v"), str):
        event["v"] = payload["v"]
    return event


@dataclass(frozen=True)
class ExecutionRequest:
    """One request of a run. ``steps`` maps hashed step ids to memos (``memo_data``,
    ``memo_error``, ``None`` for a sleep or a timed-out wait, the event for a fulfilled wait);
    ``stack`` lists the completed ids in completion order (only those are sent)."""

    run_id: str
    event: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]] = ()
    steps: Mapping[str, Any] = field(default_factory=dict)
    stack: Sequence[str] = ()
    attempt: int = 0
    max_attempts: int = 5
    disable_immediate_execution: bool = False
    use_api: bool = False
    version: int = -1
    checkpoint: tuple[str, str] | None = None  # (fn_id, qi_id): async checkpointing allowed

    def body(self) -> dict[str, Any]:
        """The JSON body as a value."""
        events = [sdk_event(e) for e in (self.events or [self.event])]
        stack = list(self.stack)
        missing = [sid for sid in stack if sid not in self.steps]
        if missing:
            raise ProtocolError(f"stack ids without a memo: {missing}")
        ctx: dict[str, Any] = {
            "run_id": self.run_id,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "disable_immediate_execution": self.disable_immediate_execution,
            "use_api": self.use_api,
            "stack": {"stack": stack, "current": len(stack)},
        }
        if self.checkpoint is not None:
            ctx["fn_id"], ctx["qi_id"] = self.checkpoint
        return {
            "event": sdk_event(self.event),
            "events": [] if self.use_api else events,
            "steps": {} if self.use_api else {sid: self.steps[sid] for sid in stack},
            "ctx": ctx,
            "version": self.version,
            "use_api": self.use_api,
        }

    def encode(self) -> bytes:
        """The body as sent: canonical JSON (RFC 8785), the bytes a signature covers."""
        return canonical_json(self.body())


def fit(
    request: ExecutionRequest, max_bytes: int = MAX_REQUEST_BYTES
) -> tuple[ExecutionRequest, bytes]:
    """``request`` as sent, and its body (``encode()``, encoded once here): when the body would
    exceed ``max_bytes``, the same request with ``use_api`` set, so the body carries the first
    event only and the SDK fetches the events (``batch_body``) and the memo (``actions_body``)
    from the server, as Inngest does."""
    body = request.encode()
    if request.use_api or len(body) <= max_bytes:
        return request, body
    fetched = replace(request, use_api=True)
    return fetched, fetched.encode()


def batch_body(request: ExecutionRequest) -> bytes:
    """The reply to ``GET /v0/runs/{run_id}/batch``: the run's events (a JSON array)."""
    return canonical_json([sdk_event(e) for e in (request.events or [request.event])])


def actions_body(request: ExecutionRequest) -> bytes:
    """The reply to ``GET /v0/runs/{run_id}/actions``: the memo (``{hashed id: memo}``)."""
    return canonical_json({sid: request.steps[sid] for sid in request.stack})


def execution_url(function_url: str, step_id: str = DISCOVERY) -> str:
    """The URL of a request: the function's registered URL with ``stepId`` set (``"step"``
    for a discovery request, a hashed step id for a targeted one)."""
    before, query, after = _url_parts(function_url)
    return f"{before}?{query}{quote_plus(step_id)}{after}"


@functools.lru_cache(maxsize=1024)
def _url_parts(function_url: str) -> tuple[str, str, str]:
    """What comes before a function URL's query, its query without ``stepId`` and ending with
    ``stepId=`` (as ``urlencode`` writes it), and its fragment (``#...``, or empty)."""
    parts = urlsplit(function_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "stepId"]
    before = urlunsplit(parts._replace(query="", fragment=""))
    after = urlunsplit(("", "", "", "", parts.fragment))
    return before, urlencode([*query, ("stepId", "")]), after


def request_headers(
    body: bytes,
    *,
    run_id: str,
    step_id: str = DISCOVERY,
    key: SigningKey | None = None,
    now: float = 0.0,
    request_version: int = -1,
) -> dict[str, str]:
    """Headers of an execution request; signed (with ``key``, at Unix time ``now``) over the
    exact canonical ``body`` when a key is given (production), unsigned in dev mode."""
    headers = {
        "Content-Type": "application/json",
        "X-Run-ID": run_id,
        "X-Inngest-Step-ID": step_id,
        "X-Inngest-Req-Version": str(request_version),
    }
    if key is not None:
        headers[SIGNATURE_HEADER] = signature(body, key, now)
    return headers
