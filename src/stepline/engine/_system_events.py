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
cancelled", "name": "Error"}``; Stepline adds ``reason`` (why it was cancelled). Pure functions:
the engine plans and stores the events.
"""

from __future__ import annotations

from typing import Any

FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_FAILED = "inngest/function.failed"
FUNCTION_CANCELLED = "inngest/function.cancelled"
FUNCTION_INVOKED = "inngest/function.invoked"

# Inngest's StepStatus names, as its enum encodes them in JSON (pkg/enums/step_status.go)
INNGEST_STATUS = {"COMPLETED": "Completed", "FAILED": "Failed", "CANCELLED": "Cancelled"}
CANCELLED_ERROR = {"error": "function cancelled", "message": "function cancelled", "name": "Error"}


def ending_names(status: str, events: list[dict[str, Any]]) -> tuple[str, ...]:
    """The system events a run ending with ``status`` emits, in Inngest's order, given its
    trigger ``events``: none when the run was started by ``function.finished`` or
    ``function.failed`` (Inngest looks at the first event of a batch, as here)."""
    if events and events[0].get("name") in (FUNCTION_FINISHED, FUNCTION_FAILED):
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
    data["_inngest"] = {"status": INNGEST_STATUS[status]}
    return data
