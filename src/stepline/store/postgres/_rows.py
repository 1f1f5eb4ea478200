"""Row mapping between PostgreSQL rows and the store's records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from stepline.serde import dumps, loads
from stepline.store._admission_rules import DeferralRow, new_run_from_dict
from stepline.store.postgres import queries as q
from stepline.store.records import (
    EventRecord,
    HistoryRecord,
    RunRecord,
    StepRecord,
    WaitRecord,
)


def json_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value).decode()


def run(r: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=r[0],
        function_id=r[1],
        status=r[2],
        event_ids=loads(r[3]),
        created_at=r[4],
        started_at=r[5],
        ended_at=r[6],
        output_json=r[7],
        error=loads(r[8]),
        attempt=r[9],
        parent_run_id=r[10],
        parent_step_hash=r[11],
        start_timeout=r[12],
        finish_timeout=r[13],
        app_id=r[14],
        worker_id=r[15],
    )


def wait(r: Sequence[Any]) -> WaitRecord:
    return WaitRecord(*r)


def step_row(s: StepRecord) -> tuple[Any, ...]:
    return (
        s.run_id,
        s.hash,
        s.step_id,
        s.kind,
        s.position,
        s.status,
        s.output_json,
        json_or_none(s.error),
        s.attempts,
        s.due_at,
        s.started_at,
        s.ended_at,
    )


def history_row(h: HistoryRecord, worker: str | None) -> tuple[Any, ...]:
    return (h.run_id, h.ts, h.kind, h.step_id, h.attempt, h.duration, json_or_none(h.data), worker)


def history(r: Sequence[Any]) -> HistoryRecord:
    return HistoryRecord(r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]), r[7])


def select_steps(conn: psycopg.Connection[Any], run_id: str) -> list[StepRecord]:
    return [
        StepRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], loads(r[7]), r[8], r[9], r[10], r[11])
        for r in conn.execute(q.SELECT_STEPS, (run_id,))
    ]


def select_events(conn: psycopg.Connection[Any], ids: list[str]) -> list[EventRecord]:
    if not ids:
        return []
    rows = conn.execute(q.SELECT_EVENTS, (ids,))
    by_id = {r[0]: EventRecord(r[0], r[1], loads(r[2]), loads(r[3]), r[4], r[5]) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def deferral(r: Sequence[Any]) -> DeferralRow:
    return DeferralRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], new_run_from_dict(loads(r[6])))
