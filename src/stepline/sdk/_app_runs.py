"""What ``App``'s run and event methods do (``sdk/_app_control.py`` states each one's contract): the
reads and writes of runs, events and functions on the app's engine, given the app's id."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime
from functools import partial

from stepline.engine._housekeeping import PURGE_BATCH
from stepline.engine.engine import Engine
from stepline.errors import ConfigError
from stepline.expressions import compile_expression
from stepline.sdk.run import Run, StepInfo
from stepline.sdk.search import (
    RunSearch,
    compile_search,
    event_fields,
    search,
    search_clauses,
    used_variables,
)
from stepline.store import StoreTx
from stepline.store.records import (
    TERMINAL_STATUSES,
    UNFINISHED_STATUSES,
    EventFilter,
    Purged,
    RunFilter,
    StepRecord,
    StoredEvent,
)


async def list_runs(
    engine: Engine,
    app_id: str | None,
    *,
    event_id: str | None,
    function_id: str | None,
    status: str | None,
    limit: int,
    with_steps: bool,
    waiting_for_worker: bool,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[float, str] | None,
) -> list[Run]:
    """``App.runs`` (``app_id`` None: every app's)."""
    now = engine.clock.now()
    waiting_at = now if waiting_for_worker else None
    query = RunFilter(
        function_id,
        status,
        event_id,
        limit,
        waiting_at,
        app_id,
        created_after=created_after.timestamp() if created_after else None,
        created_before=created_before.timestamp() if created_before else None,
        after=after,
    )
    store = engine.store

    def read() -> list[Run]:
        workers = store.live_workers(now) if with_steps or waiting_for_worker else None
        records = store.list_runs(query)
        steps: dict[str, list[StepRecord]] = {}
        if with_steps and records:
            steps = store.steps_of([r.run_id for r in records])
        return [Run.from_records(r, steps.get(r.run_id, []), workers) for r in records]

    return await engine.read(read)


async def list_events(
    engine: Engine,
    *,
    name: str | None,
    received_after: datetime | None,
    received_before: datetime | None,
    after: StoredEvent | None,
    limit: int,
    id_below: str | None = None,
) -> list[StoredEvent]:
    """``App.events``."""
    query = EventFilter(
        name,
        received_after.timestamp() if received_after else None,
        received_before.timestamp() if received_before else None,
        (after.received_at, after.event.internal_id) if after is not None else None,
        limit,
        id_below,
    )
    return await engine.read(engine.store.list_events, query)


async def wait_for_run(engine: Engine, run_id: str, timeout: float) -> Run:
    """``App.wait_for_run``."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        record = await engine.read(engine.store.get_run, run_id)
        if record is not None and record.status in TERMINAL_STATUSES:
            steps = await engine.read(engine.store.get_steps, run_id)
            return Run.from_records(record, steps)
        if time.monotonic() >= deadline:
            status = record.status if record else "unknown"
            raise TimeoutError(f"run {run_id} has not ended after {timeout}s (it is {status})")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.1)


async def cancel_runs(
    engine: Engine,
    app_id: str | None,
    function_id: str,
    *,
    started_after: datetime | None,
    started_before: datetime | None,
    if_: str | None,
    reason: str,
    limit: int,
    dry_run: bool,
) -> list[str]:
    """``App.cancel_runs`` (``app_id`` None: every app's)."""
    if not dry_run:  # (ClockSkewError beyond the bound: ``refuse_writes``)
        await engine.clock_watch.refuse_writes()
    condition = compile_expression(if_) if if_ is not None else None
    # datetimes hold microseconds: bounds are inclusive at that resolution
    after = started_after.timestamp() - 1e-6 if started_after else float("-inf")
    before = started_before.timestamp() + 1e-6 if started_before else float("inf")
    cancelled: list[str] = []
    records = []
    for status in UNFINISHED_STATUSES:
        query = RunFilter(function_id=function_id, status=status, limit=1_000_000, app_id=app_id)
        found = await engine.read(engine.store.list_runs, query)
        records += [r for r in found if after <= r.created_at <= before]
    # a run that changed status between two of these reads is listed twice: once each
    records = list({r.run_id: r for r in records}.values())
    records.sort(key=lambda r: r.created_at)
    for record in records:
        if len(cancelled) >= limit:
            break
        if condition is not None:
            events = await engine.read(engine.store.get_events, record.event_ids[:1])
            payload = events[0].payload() if events else {}
            if not condition.matches({"event": payload}):
                continue
        if dry_run:
            cancelled.append(record.run_id)
            continue
        job = engine.cancel_job(record.run_id, reason, engine.clock.now())
        if await engine.writer.write(job):
            cancelled.append(record.run_id)
            engine.changes.publish_runs([record.run_id])
    if not dry_run:
        engine.wake_workers()
    return cancelled


async def replay_run(
    engine: Engine,
    app_id: str,
    original: Run | None,
    run_id: str,
    from_step: str | None,
    *,
    all_apps: bool,
) -> str:
    """``App.replay_run`` of ``original`` (the run ``run_id``, None if there is none)."""
    if original is None:
        raise ConfigError(f"no run {run_id!r}")
    if not all_apps and original.app_id not in (app_id, ""):
        raise ConfigError(
            f"run {run_id} is a run of app {original.app_id!r}, not of {app_id!r} "
            "(all_apps=True replays it)"
        )
    before: int | None = None
    if from_step is not None:
        records = await engine.read(engine.store.get_steps, run_id)
        match = next((s for s in records if s.step_id == from_step), None)
        if match is None:
            known = ", ".join(s.step_id for s in records) or "none"
            raise ConfigError(f"run {run_id} has no step {from_step!r} (steps: {known})")
        before = match.position
    await engine.clock_watch.refuse_writes()  # ClockSkewError beyond the bound
    now = engine.clock.now()
    new_run = engine.replay_of(original, now)
    await engine.writer.write(lambda tx: tx.replay_run(run_id, new_run, before, now))
    engine.wake_workers()
    engine.changes.publish_runs([new_run.run_id])
    return new_run.run_id


async def purge_runs(engine: Engine, before: datetime, limit: int) -> int:
    """``App.purge_runs``."""
    cutoff = before.timestamp()
    deleted = 0
    while deleted < limit:
        batch = min(PURGE_BATCH, limit - deleted)

        purged = await engine.writer.write(partial(_purge, cutoff=cutoff, limit=batch))
        deleted += purged.runs
        if not purged.full(batch):
            break
    return deleted


def _purge(tx: StoreTx, *, cutoff: float, limit: int) -> Purged:
    return tx.purge_before(cutoff, limit)


async def search_runs(
    engine: Engine,
    app_id: str | None,
    query: str,
    *,
    function_id: str | None,
    status: str | None,
    limit: int,
    scan: int,
    after: tuple[float, str] | None,
    with_steps: bool,
) -> RunSearch:
    """``App.search_runs`` (``app_id`` None: every app's)."""
    expression = compile_search(query)
    store = engine.store
    runs_filter = RunFilter(function_id, status, None, scan, None, app_id, after=after)
    clauses = search_clauses(query)
    used, fields = used_variables(query), event_fields(query)

    result = await engine.read(
        lambda: search(store, runs_filter, scan, clauses, expression, used, fields, limit)
    )
    if not with_steps or not result.runs:
        return result
    steps = await engine.read(store.steps_of, [r.run_id for r in result.runs])
    runs = [
        dataclasses.replace(r, steps=[StepInfo.from_record(s) for s in steps.get(r.run_id, [])])
        for r in result.runs
    ]
    return dataclasses.replace(result, runs=runs)
