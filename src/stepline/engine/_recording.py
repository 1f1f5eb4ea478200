"""The rows a step or a run's end writes, built once for every driver: the native executor's
rounds and endings (``_rounds``, ``_endings``, ``_attempts``) and the HTTP driver
(``drivers/inngest/_steps``, ``_driver``) record a wait, an invoke, a suspension and a run's
end the same way. Pure: the time is a parameter, nothing is written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stepline._ids import new_id
from stepline.engine._system_events import (
    FUNCTION_INVOKED,
    invoked_data,
)
from stepline.engine.admission import admission_for
from stepline.engine.engine import Engine
from stepline.errors import LimitExceededError
from stepline.expressions import prepare_match
from stepline.sdk.event import Event
from stepline.sdk.function import FunctionDef
from stepline.serde import dumps
from stepline.store.keys import indexed
from stepline.store.records import (
    EventIngest,
    HistoryRecord,
    NewRun,
    RunEnd,
    RunRecord,
    WaitRecord,
    Wake,
)


def wait_rows(
    run_id: str,
    step_hash: str,
    step_name: str,
    event_name: str,
    expression: str | None,
    due_at: float | None,
    trigger: dict[str, Any],
    now: float,
    history: Mapping[str, Any] | None = None,
) -> tuple[WaitRecord, HistoryRecord]:
    """A pending ``wait_for_event``'s wait (its ``expression`` prepared against the run's
    ``trigger`` event; one equality of it indexed) and its WAIT history row (``history``: more
    data for it). Raises ``ExpressionError`` for an expression that cannot be prepared."""
    text: str | None = None
    index: tuple[tuple[str, str], ...] = ()
    if expression is not None:
        prepared = prepare_match(expression, trigger)
        text, index = prepared.text, prepared.index_keys
    index_path, index_value = indexed(index)
    wait = WaitRecord(
        wait_id=new_id(now),
        run_id=run_id,
        step_hash=step_hash,
        event_name=event_name,
        expression=text,
        index_path=index_path,
        index_value=index_value,
        expires_at=due_at,
        created_at=now,
        step_id=step_name,
    )
    data = {"event": event_name, "if": expression, "until": due_at, **(history or {})}
    return wait, HistoryRecord(run_id, now, "WAIT", step_name, data=data)


def invoke_rows(
    engine: Engine,
    target: FunctionDef,
    run: RunRecord,
    step_hash: str,
    step_name: str,
    asked: str,
    data: dict[str, Any],
    now: float,
    *,
    due_at: float | None = None,
    user: dict[str, Any] | None = None,
    v: str | None = None,
    source_app_id: str | None = None,
    history: Mapping[str, Any] | None = None,
) -> tuple[EventIngest, NewRun, HistoryRecord]:
    """An invoke of ``target`` (``asked``: the id the step named it by) from step
    ``step_hash`` of ``run``: the ``function.invoked`` event carrying ``data``, the child run
    it starts (admitted as any run of the function: Inngest schedules an invoke event as any
    event; not debounced or batched) and the INVOKE history row (``history``: more data for
    it). ``due_at``: when the step times out; ``user`` and ``v``: the event's (an SDK's invoke
    payload may give them, as Inngest keeps them). Raises ``EventError`` for an event over the
    size limit."""
    payload = invoked_data(
        data,
        fn_id=target.id,
        source_app_id=source_app_id if source_app_id is not None else engine.app_id,
        source_fn_id=run.function_id,
        run_id=run.run_id,
        step_hash=step_hash,
        step_name=step_name,
        now=now,
        timeout=None if due_at is None else due_at - now,
    )
    invoked = Event(name=FUNCTION_INVOKED, data=payload, user=user or {}, v=v)
    event = engine.event_record(invoked, now)
    child = NewRun(
        new_id(now),
        target.id,
        (event.internal_id,),
        run.run_id,
        step_hash,
        admission_for(target, engine.app_id, event.payload()),
        app_id=engine.app_id,
    )
    data_row = {"function_id": asked, "child_run_id": child.run_id, **(history or {})}
    row = HistoryRecord(run.run_id, now, "INVOKE", step_name, data=data_row)
    return EventIngest(event), child, row


def encoded_result(fn_id: str, result: Any, limit: int) -> bytes:
    """A function's result encoded as its run's output: ``SerializationError`` when it cannot
    be stored, ``LimitExceededError`` (``"step_output"``) when it is over ``limit`` bytes
    (``Limits.max_step_output_bytes``); either fails the run for good, in process or from an
    SDK (asking again would give the same)."""
    output = dumps(result, f"result of function {fn_id!r}")
    if len(output) > limit:
        raise LimitExceededError(
            "step_output",
            f"result of function {fn_id!r} is {len(output)} bytes, over the limit of {limit} bytes",
        )
    return output


def suspension(kinds: set[str], deadlines: Iterable[float]) -> RunEnd:
    """The end of a pass that leaves the run waiting on steps of ``kinds`` (``retry``,
    ``wait``, ``invoke``, ``sleep``): RETRYING when a step retries, else WAITING for a wait or
    an invoke, else SLEEPING; due at the earliest of ``deadlines`` (None: no deadline)."""
    status = (
        "RETRYING" if "retry" in kinds else "WAITING" if kinds & {"wait", "invoke"} else "SLEEPING"
    )
    return RunEnd(status=status, due_at=min(deadlines, default=None))


def retry_rows(
    run: RunRecord, error: dict[str, Any], retry_at: float, now: float, **data: Any
) -> tuple[HistoryRecord, RunEnd]:
    """A failed attempt of ``run`` that it retries at ``retry_at``: its FUNCTION_FAILED
    history row (``data``: more for it) and the RETRYING end with the next attempt's number."""
    attempt = run.attempt
    row = HistoryRecord(
        run.run_id,
        now,
        "FUNCTION_FAILED",
        attempt=attempt,
        data={"error": error, "retry_at": retry_at, **data},
    )
    return row, RunEnd(status="RETRYING", due_at=retry_at, attempt=attempt + 1)


def parent_wake(
    run: RunRecord, status: str, output: bytes | None, error: dict[str, Any] | None
) -> Wake | None:
    """The wake-up of the step that invoked ``run`` (None: no run invoked it)."""
    if run.parent_run_id is None or run.parent_step_hash is None:
        return None
    return Wake(run.parent_run_id, run.parent_step_hash, status, output, error)
