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

Pure functions: the engine plans and stores the events. The names, and the data of a
cancellation's events made of encoded trigger events, are in ``store/_cancelled_data.py`` (a
store makes them again when it reads the announcements it keeps as a row).
"""

from __future__ import annotations

from typing import Any

from stepline.store._cancelled_data import CANCELLED_ERROR as CANCELLED_ERROR
from stepline.store._cancelled_data import FUNCTION_CANCELLED as FUNCTION_CANCELLED
from stepline.store._cancelled_data import FUNCTION_FAILED as FUNCTION_FAILED
from stepline.store._cancelled_data import FUNCTION_FINISHED as FUNCTION_FINISHED
from stepline.store._cancelled_data import FUNCTION_INVOKED as FUNCTION_INVOKED
from stepline.store._cancelled_data import INNGEST_STATUS as INNGEST_STATUS
from stepline.store._cancelled_data import ending_names_after as ending_names_after
from stepline.store._cancelled_data import invoked_correlation

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


def not_started_reason(start_timeout: float) -> str:
    """Why a run not started within its start timeout is cancelled."""
    return f"not started within {start_timeout:g}s (timeouts.start)"


def ending_names(status: str, events: list[dict[str, Any]]) -> tuple[str, ...]:
    """The system events a run ending with ``status`` emits, in Inngest's order, given its
    trigger ``events``: none when the run was started by ``function.finished`` or
    ``function.failed`` (Inngest looks at the first event of a batch, as here)."""
    return ending_names_after(status, events[0].get("name") if events else None)


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
    correlation = invoked_correlation(events)
    if correlation is not None:
        data["correlation_id"] = correlation
    data["_inngest"] = {"status": INNGEST_STATUS[status]}
    return data
