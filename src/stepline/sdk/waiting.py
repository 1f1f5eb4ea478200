"""Why a run that has not ended is not running: the dashboard's "waiting on" column.

A pure function over what the store says of the run (``QueueState``), the paused functions and
the live workers; no I/O here (``App.waiting_on`` reads them).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from stepline.sdk.function import FunctionDef
from stepline.sdk.run import Run
from stepline.store.interface import Store
from stepline.store.records import QueueState, RunFilter, RunRecord, WorkerRecord
from stepline.store.search_records import RunClause

# every kind, in the order the dashboard offers them as filters
WAITING_KINDS: tuple[str, ...] = (
    "running",
    "queued",
    "scheduled",
    "sleep",
    "event",
    "invoke",
    "retry",
    "concurrency",
    "throttle",
    "paused",
    "worker",
)


# the statuses a run waiting on each kind can have
KIND_STATUSES: dict[str, tuple[str, ...]] = {
    "sleep": ("SLEEPING",),
    "event": ("WAITING",),
    "invoke": ("WAITING",),
    "retry": ("RETRYING",),
    "running": ("RUNNING",),
    "queued": ("QUEUED", "RUNNING"),
    "scheduled": ("QUEUED",),
    "throttle": ("QUEUED",),
    "concurrency": ("QUEUED",),
}


def kind_clauses(kind: str, now: float) -> tuple[RunClause, ...]:
    """What the queue row of every run that waits on ``kind`` at ``now`` holds, for a store to
    decide (``Store.search_window``): due by ``now`` or without a due time ("queued"), due
    later ("scheduled", "throttle"); nothing for the other kinds. ``waiting_on`` decides each
    run it keeps."""
    if kind == "queued":
        return (RunClause("queue.due_at", (), "<=", now, if_missing=True),)
    if kind in ("scheduled", "throttle"):
        return (RunClause("queue.due_at", (), ">", now),)
    return ()


@dataclass(frozen=True)
class WaitingOn:
    """What an unfinished run waits for: ``kind`` (one of ``WAITING_KINDS``), a sentence
    saying it, the time it wakes by itself if any (``until``), and for a wait the event name,
    expression and timeout."""

    kind: str
    text: str
    until: datetime | None = None
    event: str | None = None
    expression: str | None = None


# a stored wait's expression wraps the run's own values in dyn(): shown without it
_DYN_LITERAL = re.compile(r'dyn\(("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null)\)')


def readable(expression: str) -> str:
    """A stored wait expression as people wrote it (``dyn("e-7")`` shown as ``"e-7"``)."""
    return _DYN_LITERAL.sub(r"\1", expression)


def _at(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def waiting_on(
    run: Run,
    state: QueueState | None,
    *,
    now: float,
    paused: Collection[str],
    workers: Collection[WorkerRecord],
    function: FunctionDef | None,
) -> WaitingOn | None:
    """Why ``run`` is not running now (None once it has ended)."""
    if run.done:
        return None
    if state is not None and state.leased:
        return WaitingOn("running", "running: a worker executes it now")
    if run.function_id in paused:
        return WaitingOn("paused", f"function {run.function_id} is paused: resume it to run")
    served = any(
        run.function_id in w.function_ids and run.app_id in (w.app_id, "") for w in workers
    )
    if not served:
        return WaitingOn("worker", f"no live worker knows function {run.function_id}")
    due = state.due_at if state is not None else None
    if run.status == "SLEEPING" and due is not None:
        return WaitingOn("sleep", f"sleeping until {_clock(due)}", _at(due))
    if run.status == "WAITING":
        waits = state.waits if state is not None else ()
        if waits:
            wait = min(waits, key=lambda w: w.expires_at or float("inf"))
            text = f"waiting for event {wait.event_name}"
            expression = readable(wait.expression) if wait.expression else None
            if expression:
                text += f" if {expression}"
            if wait.expires_at is not None:
                text += f", times out at {_clock(wait.expires_at)}"
            return WaitingOn("event", text, _at(wait.expires_at), wait.event_name, expression)
        text = "waiting for an invoked run to finish"
        if due is not None:
            text += f", times out at {_clock(due)}"
        return WaitingOn("invoke", text, _at(due))
    if run.status == "RETRYING" and due is not None:
        return WaitingOn("retry", f"retry backoff: next attempt at {_clock(due)}", _at(due))
    if state is not None and state.full_keys:
        keys = ", ".join(state.full_keys)
        return WaitingOn("concurrency", f"held by concurrency key {keys} (limit reached)")
    if due is not None and due > now:
        if function is not None and function.options.throttle is not None:
            return WaitingOn("throttle", f"throttled until {_clock(due)}", _at(due))
        return WaitingOn("scheduled", f"scheduled for {_clock(due)}", _at(due))
    return WaitingOn("queued", "queued: due now, waiting for a free worker slot")


def decide_waiting(
    store: Store,
    functions: Mapping[str, FunctionDef],
    app_id: str,
    runs: Sequence[Run],
    now: float,
    workers: list[WorkerRecord] | None = None,
) -> dict[str, WaitingOn]:
    """``App.waiting_on`` on a reader thread: the runs' queue states, the app's paused
    functions and (unless given) the live workers, read here, then each run decided."""
    states = {s.run_id: s for s in store.queue_states([r.run_id for r in runs], now)}
    paused = store.paused_functions(app_id)
    if workers is None:
        workers = store.live_workers(now)
    found: dict[str, WaitingOn] = {}
    for run in runs:
        reason = waiting_on(
            run,
            states.get(run.run_id),
            now=now,
            paused=paused,
            workers=workers,
            function=functions.get(run.function_id),
        )
        if reason is not None:
            found[run.run_id] = reason
    return found


def runs_waiting_on(
    store: Store,
    functions: Mapping[str, FunctionDef],
    kind: str,
    query: RunFilter,
    statuses: tuple[str, ...],
    limit: int,
    now: float,
) -> list[Run]:
    """``App.runs_waiting`` on a reader thread (``query``: its filters, ``query.app_id`` the
    app, ``query.limit`` the runs scanned per status)."""
    workers = store.live_workers(now)
    if kind not in ("running", "paused"):
        served = {f for w in workers for f in w.function_ids}
        if not served or (query.function_id is not None and query.function_id not in served):
            return []
    clauses = kind_clauses(kind, now)
    records: list[RunRecord] = []
    for wanted in statuses:
        window = store.search_window(replace(query, status=wanted), query.limit, clauses)
        records += [record for _, record in window.candidates]
    records.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
    found: list[Run] = []
    app_id = query.app_id or ""
    for start in range(0, len(records), 500):
        runs = [Run.from_records(r, []) for r in records[start : start + 500]]
        open_runs = [r for r in runs if not r.done]
        reasons = decide_waiting(store, functions, app_id, open_runs, now, workers)
        found += [r for r in runs if (w := reasons.get(r.run_id)) and w.kind == kind]
        if len(found) >= limit:
            break
    return found[:limit]
