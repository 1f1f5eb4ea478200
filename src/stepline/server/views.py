"""The JSON forms of runs, steps, history, events and functions: one shape for the REST API,
the CLI's --json and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stepline._cursor import encode_cursor
from stepline.sdk.function import FunctionDef
from stepline.sdk.run import EventRun, HistoryEntry, Run, StepInfo
from stepline.store.records import EventRecord, SkipRecord, StoredEvent


def iso(moment: datetime | float | None) -> str | None:
    """ISO 8601 in UTC with microseconds (``2026-05-01T12:00:00.123456Z``: the time as stored,
    so a client reading it back, as ``stepline --url`` does, has the same), or None."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def step_json(step: StepInfo) -> dict[str, Any]:
    """A step: ``attempts`` made before the one executing, ``executing_attempt`` the 1-based
    number of the attempt executing now (null unless RUNNING), as the CLI's table shows it
    ("attempt N executing since ..."), with ``started_at`` its start."""
    return {
        "id": step.id,
        "kind": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "executing_attempt": step.attempts + 1 if step.status == "RUNNING" else None,
        "output": step.output,
        "error": step.error,
        "started_at": iso(step.started_at),
        "ended_at": iso(step.ended_at),
    }


def run_json(run: Run, *, steps: bool = True) -> dict[str, Any]:
    """A run, with its steps unless ``steps`` is false."""
    found: dict[str, Any] = {
        "run_id": run.run_id,
        "app_id": run.app_id,
        "function_id": run.function_id,
        "status": run.status,
        "output": run.output,
        "error": run.error,
        "event_ids": run.event_ids,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "attempt": run.attempt,
        "worker_id": run.worker_id,
        "waiting_for_worker": run.waiting_for_worker,
        "cursor": encode_cursor(run.cursor) if run.cursor else None,
    }
    if steps:
        found["steps"] = [step_json(s) for s in run.steps]
    return found


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry: ``at`` when it happened; ``started_at`` is ``at`` less its
    ``duration`` (a step's start) when it has one."""
    return {
        "at": iso(entry.at),
        "kind": entry.kind,
        "step_id": entry.step_id,
        "attempt": entry.attempt,
        "started_at": None
        if entry.duration is None
        else iso(entry.at - timedelta(seconds=entry.duration)),
        "duration": entry.duration,
        "data": entry.data,
        "worker_id": entry.worker_id,
    }


def event_run_json(found: EventRun) -> dict[str, Any]:
    """A run an event acted on: the run (without steps) and the event's ``effect`` on it."""
    return {**run_json(found.run, steps=False), "effect": found.effect}


def event_json(event: EventRecord, stored: StoredEvent | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": event.internal_id,
        "name": event.name,
        "data": event.data,
        "user": event.user,
        "sender_id": event.id,
        "ts": int(event.ts * 1000),
        "v": event.v,
    }
    if stored is not None:
        found["received_at"] = iso(stored.received_at)
        found["duplicate"] = stored.duplicate
    return found


def skip_json(skip: SkipRecord) -> dict[str, Any]:
    return {
        "event_id": skip.event_id,
        "function_id": skip.function_id,
        "reason": skip.reason,
        "at": iso(skip.at),
    }


def function_json(fn: FunctionDef, app_id: str, paused: bool) -> dict[str, Any]:
    o = fn.options
    triggers: list[dict[str, Any]] = [{"event": t.name, "if": t.if_} for t in fn.triggers]
    triggers += [{"cron": c.cron} for c in fn.crons]
    flow: dict[str, Any] = {
        "concurrency": [{"limit": c.limit, "key": c.key, "scope": c.scope} for c in o.concurrency],
        "throttle": None
        if o.throttle is None
        else {
            "limit": o.throttle.limit,
            "period": o.throttle.period_seconds,
            "burst": o.throttle.burst,
            "key": o.throttle.key,
        },
        "rate_limit": None
        if o.rate_limit is None
        else {
            "limit": o.rate_limit.limit,
            "period": o.rate_limit.period_seconds,
            "key": o.rate_limit.key,
        },
        "debounce": None
        if o.debounce is None
        else {
            "period": o.debounce.period_seconds,
            "key": o.debounce.key,
            "timeout": o.debounce.timeout_seconds,
        },
        "batch_events": None
        if o.batch_events is None
        else {
            "max_size": o.batch_events.max_size,
            "timeout": o.batch_events.timeout_seconds,
            "key": o.batch_events.key,
            "if": o.batch_events.if_,
        },
        "priority": None if o.priority is None else {"run": o.priority.run},
        "singleton": None
        if o.singleton is None
        else {"key": o.singleton.key, "mode": o.singleton.mode},
        "idempotency": None if o.idempotency is None else o.idempotency.text,
    }
    return {
        "id": fn.id,
        "app_id": app_id,
        "triggers": triggers,
        "retries": fn.retries,
        "paused": paused,
        "flow_control": flow,
        "cancel_on": [
            {"event": c.event, "if": c.if_, "match": c.match, "timeout": c.timeout_seconds}
            for c in o.cancel_on
        ],
        "timeouts": None
        if o.timeouts is None
        else {"start": o.timeouts.start_seconds, "finish": o.timeouts.finish_seconds},
        "on_failure_of": fn.on_failure_of,
        "sdk_app": None
        if fn.served_by is None
        else {"name": fn.served_by[0], "url": fn.served_by[1]},
    }
