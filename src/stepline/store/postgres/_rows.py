"""Reads of records that need a PostgreSQL connection (the row shapes are ``store/_rows.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from stepline.serde import loads
from stepline.store import _rows as shapes
from stepline.store._admission_rules import DeferralRow, new_run_from_dict
from stepline.store.postgres import queries as q
from stepline.store.records import (
    EventRecord,
    StepRecord,
)


def select_steps(conn: psycopg.Connection[Any], run_id: str) -> list[StepRecord]:
    return [shapes.step_record(r) for r in conn.execute(q.SELECT_STEPS, (run_id,))]


def select_events(conn: psycopg.Connection[Any], ids: list[str]) -> list[EventRecord]:
    if not ids:
        return []
    found = conn.execute(q.SELECT_EVENTS, (ids,))
    by_id = {r[0]: shapes.event_record(r) for r in found}
    return [by_id[i] for i in ids if i in by_id]


def deferral(r: Sequence[Any]) -> DeferralRow:
    return DeferralRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], new_run_from_dict(loads(r[6])))
