"""What a run's end announces, shaped as Inngest's server shapes it.

Every ending emits ``inngest/function.finished``; a failure emits ``inngest/function.failed``
and a cancellation ``inngest/function.cancelled`` alongside, all three with the same data
(Inngest: ``pkg/execution/executor/finalize.go``, ``finalizeEvents`` and
``functionFinishedData``)::

    {"function_id", "run_id", "event": <first trigger event>, "events": [<trigger events>],
     "result": <output> | "error": {...}, "_inngest": {"status": "Completed"|"Failed"|"Cancelled"}}

A run started by ``inngest/function.finished`` or ``inngest/function.failed`` emits none of
them at its end, as in Inngest's ``finalizeEvents`` ("don't recursively trigger internal finish
handlers"), so two functions listening to ``inngest/function.finished`` cannot trigger each
other forever; a run started by ``inngest/function.cancelled`` or any other event announces its
end. A cancellation's error is Inngest's ``{"error": "function cancelled", "message": "function
cancelled", "name": "Error"}``; Stepline adds ``reason`` (why it was cancelled). A run started by
an invoke also carries the invoke's ``correlation_id`` (``<parent run id>.<step hash>``), as
Inngest's ``functionFinishedData`` does.

An invoke starts its child with ``inngest/function.invoked``, whose data is the payload's plus
``_inngest`` (Inngest's ``InngestMetadata``, ``pkg/event/event.go``): ``fn_id`` (the invoked
function), ``source_app_id``, ``source_fn_id``, ``source_fn_v``, ``correlation_id``, ``expire``
(when the invoke times out, Unix ms; a year ahead without a timeout, Inngest's longest),
``gid`` (no step groups in Stepline: empty) and ``name`` (the invoking step's id).

Pure functions: the engine plans and stores the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from stepline.serde import dumps_exact, loads

FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_FAILED = "inngest/function.failed"
FUNCTION_CANCELLED = "inngest/function.cancelled"
FUNCTION_INVOKED = "inngest/function.invoked"

# Inngest's StepStatus names, as its enum encodes them in JSON (pkg/enums/step_status.go)
INNGEST_STATUS = {"COMPLETED": "Completed", "FAILED": "Failed", "CANCELLED": "Cancelled"}
CANCELLED_ERROR = {"error": "function cancelled", "message": "function cancelled", "name": "Error"}
# ``ending_data``'s keys, in its order, for a cancellation (see ``cancelled_announcements``)
_CANCELLED_DATA = (
    b'{"function_id":%b,"run_id":%b,"event":%b,"events":[%b],"error":'
    + dumps_exact(CANCELLED_ERROR)
    + b',"reason":%b%b,"_inngest":'
    + dumps_exact({"status": INNGEST_STATUS["CANCELLED"]})
    + b"}"
)
INVOKE_MAX_SECONDS = 365 * 24 * 3600  # an invoke without a timeout waits this long (Inngest)


def correlation_id(parent_run_id: str, step_hash: str) -> str:
    """How an invoked run names the step waiting for it."""
    return f"{parent_run_id}.{step_hash}"


def invoked_data(
    data: dict[str, Any],
    *,
    fn_id: str,
    source_app_id: str,
    source_fn_id: str,
    run_id: str,
    step_hash: str,
    step_name: str,
    now: float,
    timeout: float | None,
) -> dict[str, Any]:
    """The data of the ``inngest/function.invoked`` event an invoke sends (``now`` and the
    ``timeout`` in seconds)."""
    expire = now + (INVOKE_MAX_SECONDS if timeout is None else timeout)
    metadata = {
        "source_app_id": source_app_id,
        "source_fn_id": source_fn_id,
        "source_fn_v": 0,
        "fn_id": fn_id,
        "correlation_id": correlation_id(run_id, step_hash),
        "expire": int(expire * 1000),
        "gid": "",
        "name": step_name,
    }
    return {**data, "_inngest": metadata}


def sdk_failure(reply_status: int, no_retry: bool, error: dict[str, Any]) -> dict[str, Any]:
    """The ``error`` of an SDK function's ending events, as Inngest's executor shapes it: the
    driver's error text (``"NonRetriableError"`` when the SDK said not to retry, else ``"invalid
    status code: <n>"``) beside the SDK's ``name``, ``message`` and ``stack``, without its
    ``code``."""
    text = "NonRetriableError" if no_retry else f"invalid status code: {reply_status}"
    failure = {"error": text, "name": error["name"], "message": error["message"]}
    if "stack" in error:
        failure["stack"] = error["stack"]
    return failure


def _invoked_correlation(events: list[dict[str, Any]]) -> str | None:
    first = events[0] if events else {}
    if first.get("name") != FUNCTION_INVOKED:
        return None
    data = first.get("data")
    metadata = data.get("_inngest") if isinstance(data, dict) else None
    found = metadata.get("correlation_id") if isinstance(metadata, dict) else None
    return found if isinstance(found, str) and found else None


def not_started_reason(start_timeout: float) -> str:
    """Why a run not started within its start timeout is cancelled."""
    return f"not started within {start_timeout:g}s (timeouts.start)"


def ending_names(status: str, events: list[dict[str, Any]]) -> tuple[str, ...]:
    """The system events a run ending with ``status`` emits, in Inngest's order, given its
    trigger ``events``: none when the run was started by ``function.finished`` or
    ``function.failed`` (Inngest looks at the first event of a batch, as here)."""
    return ending_names_after(status, events[0].get("name") if events else None)


def ending_names_after(status: str, first: str | None) -> tuple[str, ...]:
    """``ending_names`` given the name of the run's first trigger event (None: none)."""
    if first in (FUNCTION_FINISHED, FUNCTION_FAILED):
        return ()
    if status == "FAILED":
        return (FUNCTION_FINISHED, FUNCTION_FAILED)
    if status == "CANCELLED":
        return (FUNCTION_FINISHED, FUNCTION_CANCELLED)
    return (FUNCTION_FINISHED,)


def ending_data(
    function_id: str,
    run_id: str,
    events: list[dict[str, Any]],
    status: str,
    *,
    result: Any = None,
    error: dict[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The data of a run's ending events (``events``: its trigger events' payloads)."""
    data: dict[str, Any] = {
        "function_id": function_id,
        "run_id": run_id,
        "event": events[0] if events else {},
        "events": events,
    }
    if status == "COMPLETED":
        data["result"] = result
    else:
        data["error"] = dict(CANCELLED_ERROR) if status == "CANCELLED" else error
    if reason is not None:
        data["reason"] = reason
    correlation = _invoked_correlation(events)
    if correlation is not None:
        data["correlation_id"] = correlation
    data["_inngest"] = {"status": INNGEST_STATUS[status]}
    return data


def cancelled_announcements(
    cancelled: Sequence[tuple[str, str]],
    runs: Sequence[Sequence[tuple[str, bytes]]],
    reason: str,
) -> list[tuple[tuple[str, ...], bytes]]:
    """The names (``ending_names_after``) and data of the ending events of each run in
    ``cancelled`` (its run id and function id) that has some: its data as ``dumps_exact``
    encodes ``ending_data(function_id, run_id, <payloads>, "CANCELLED", reason=reason)`` (the
    same bytes), made of its trigger events' payloads already encoded (``runs``: each one's
    name and payload JSON, ``UnheardEvents.encoded_run_events``) without decoding them; only
    the first one of a run started by an invoke is, for its ``correlation_id``. The reason and
    each function id are quoted once for all the runs."""
    quote = orjson.dumps
    reason_json = quote(reason)
    functions: dict[str, bytes] = {}
    names_after: dict[str | None, tuple[str, ...]] = {}
    made: list[tuple[tuple[str, ...], bytes]] = []
    for (run_id, function_id), events in zip(cancelled, runs, strict=True):
        first = events[0][0] if events else None
        names = names_after.get(first)
        if names is None:
            names = names_after[first] = ending_names_after("CANCELLED", first)
        if names:
            function_json = functions.get(function_id)
            if function_json is None:
                function_json = functions[function_id] = quote(function_id)
            made.append((names, _cancelled_data(function_json, quote(run_id), events, reason_json)))
    return made


def _cancelled_data(
    function_json: bytes, run_json: bytes, events: Sequence[tuple[str, bytes]], reason_json: bytes
) -> bytes:
    """A run's data (see ``cancelled_announcements``) given the JSON of its strings."""
    first = events[0][1] if events else b"{}"
    correlation = b""
    if events and events[0][0] == FUNCTION_INVOKED:
        found = _invoked_correlation([loads(first)])
        if found is not None:
            correlation = b',"correlation_id":' + dumps_exact(found)
    return _CANCELLED_DATA % (
        function_json,
        run_json,
        first,
        first if len(events) == 1 else b",".join([payload for _, payload in events]),
        reason_json,
        correlation,
    )
