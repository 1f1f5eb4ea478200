"""The names and data of a cancelled run's ending events (``inngest/function.finished`` and
``inngest/function.cancelled``), made of its trigger events already encoded: what the engine's
announcements carry (``engine/_system_events.py``, which documents their shape) and what a
store that keeps them as one small row makes again when they are read (SQLite schema 27,
``store/sqlite/_derived.py``). Here, below the engine, so both make them with the same code.

Pure functions."""

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
# the names a cancelled run announces (``ending_names_after``), of any first trigger event but
# these: none after FINISHED or FAILED (no loop of listeners); after INVOKED the same names, with
# the invoke's ``correlation_id`` in the data
CANCELLED_NAMES = (FUNCTION_FINISHED, FUNCTION_CANCELLED)


def ending_names_after(status: str, first: str | None) -> tuple[str, ...]:
    """The system events a run ending with ``status`` emits, in Inngest's order, given the name
    of its first trigger event (None: none): none when the run was started by
    ``function.finished`` or ``function.failed`` (Inngest looks at the first event of a batch)."""
    if first in (FUNCTION_FINISHED, FUNCTION_FAILED):
        return ()
    if status == "FAILED":
        return (FUNCTION_FINISHED, FUNCTION_FAILED)
    if status == "CANCELLED":
        return CANCELLED_NAMES
    return (FUNCTION_FINISHED,)


def invoked_correlation(events: list[dict[str, Any]]) -> str | None:
    """The ``correlation_id`` of a run started by an invoke (its first trigger event's
    ``_inngest`` metadata), given its trigger events' payloads; else None."""
    first = events[0] if events else {}
    if first.get("name") != FUNCTION_INVOKED:
        return None
    data = first.get("data")
    metadata = data.get("_inngest") if isinstance(data, dict) else None
    found = metadata.get("correlation_id") if isinstance(metadata, dict) else None
    return found if isinstance(found, str) and found else None


def cancelled_announcements(
    cancelled: Sequence[tuple[str, str]],
    runs: Sequence[Sequence[tuple[str, bytes]]],
    reason: str,
) -> list[tuple[tuple[str, ...], bytes]]:
    """The names (``ending_names_after``) and data of the ending events of each run in
    ``cancelled`` (its run id and function id), in its order (no names and no data for a run
    that has none): its data as ``dumps_exact``
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
            made.append((names, cancelled_data(function_json, quote(run_id), events, reason_json)))
        else:
            made.append(((), b""))
    return made


def cancelled_data(
    function_json: bytes, run_json: bytes, events: Sequence[tuple[str, bytes]], reason_json: bytes
) -> bytes:
    """A run's data (see ``cancelled_announcements``) given the JSON of its strings."""
    first = events[0][1] if events else b"{}"
    correlation = b""
    if events and events[0][0] == FUNCTION_INVOKED:
        found = invoked_correlation([loads(first)])
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
