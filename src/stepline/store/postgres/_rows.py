"""Reads of records that need a PostgreSQL connection (the row shapes are ``store/_rows.py``)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import psycopg

from stepline.serde import loads
from stepline.store import _rows as shapes
from stepline.store._admission_rules import DeferralRow, new_run_from_dict
from stepline.store.postgres import _read_queries as rq
from stepline.store.postgres import queries as q
from stepline.store.postgres._merging import Later
from stepline.store.records import (
    EventRecord,
    RunState,
    StepRecord,
)

_RUN_WIDTH = len(rq.RUN_COLUMNS.split(","))
_EVENT_WIDTH = len(q.EVENT_COLUMNS.split(","))
_STEP_WIDTH = len(rq.SELECT_STEPS.split(" FROM ")[0].split(","))
_WAIT_WIDTH = len(q.WAIT_COLUMNS.split(","))
_STEP_NAMES = [c.strip() for c in q.STEP_COLUMNS.split(",")]
_WAIT_NAMES = [c.strip() for c in q.WAIT_COLUMNS.split(",")]
_STEP_ORDER = operator.itemgetter(_STEP_NAMES.index("position"), _STEP_NAMES.index("hash"))
_WAIT_ORDER = operator.itemgetter(_WAIT_NAMES.index("created_at"), _WAIT_NAMES.index("wait_id"))
_STEP_HASH, _STEP_STATUS = _STEP_NAMES.index("hash"), _STEP_NAMES.index("status")
_WAIT_STEP = _WAIT_NAMES.index("step_hash")


def select_steps(conn: psycopg.Connection[Any], run_id: str) -> list[StepRecord]:
    return [shapes.step_record(r) for r in conn.execute(rq.SELECT_STEPS, (run_id,))]


def select_events(conn: psycopg.Connection[Any], ids: list[str]) -> list[EventRecord]:
    if not ids:
        return []
    found = conn.execute(rq.SELECT_EVENTS, (ids,))
    by_id = {r[0]: shapes.event_record(r) for r in found}
    return [by_id[i] for i in ids if i in by_id]


def deferral(r: Sequence[Any]) -> DeferralRow:
    return DeferralRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], new_run_from_dict(loads(r[6])))


def run_state(row: Sequence[Any]) -> RunState:
    """A ``LOAD_RUN`` row: the run's columns, then its events', steps' and waits' columns, each
    an array (NULL where it has none), the arrays of a table in one row order, any: the events
    are put in the run's order, the steps in position order (then hash), the waits in creation
    order (then id), as ``load_run`` gives them on every store; only its pending waits (their
    step PENDING, read in the same snapshot: a stale wait's row is no wait of the run, as
    SQLite reads them, ``queries.WAITING``), filtered here rather than in the statement, the
    lease path's load, which stays as it was."""
    at = _RUN_WIDTH
    run = shapes.run_record(row[:at])
    events, at = _rows_of(row, at, _EVENT_WIDTH)
    steps, at = _rows_of(row, at, _STEP_WIDTH)
    waits, at = _rows_of(row, at, _WAIT_WIDTH)
    if waits:
        pending = {s[_STEP_HASH] for s in steps if s[_STEP_STATUS] == "PENDING"}
        waits = [w for w in waits if w[_WAIT_STEP] in pending]
    if len(steps) > 1:
        steps.sort(key=_STEP_ORDER)
    if len(waits) > 1:
        waits.sort(key=_WAIT_ORDER)
    by_id = {r[0]: shapes.event_record(r) for r in events}
    return RunState(
        run=run,
        events=[by_id[i] for i in run.event_ids if i in by_id],
        steps={s.hash: s for s in map(shapes.step_record, steps)},
        waits=[shapes.wait_record(r) for r in waits],
    )


class LoadedRuns:
    """The ``LOAD_RUNS`` rows of runs a transaction leased (a ``Later``'s), each decoded when
    asked (``Lease.loaded``), after that transaction committed."""

    def __init__(self, later: Later) -> None:
        self._later = later
        self._rows: dict[str, Sequence[Any]] | None = None

    def state(self, run_id: str) -> RunState | None:
        if self._rows is None:
            self._rows = {r[0]: r for r in self._later.rows or ()}
        row = self._rows.get(run_id)
        return None if row is None else run_state(row)


def _rows_of(row: Sequence[Any], at: int, width: int) -> tuple[list[tuple[Any, ...]], int]:
    columns = row[at : at + width]
    if columns[0] is None:  # no rows: every array_agg is NULL
        return [], at + width
    return list(zip(*columns, strict=True)), at + width
