"""The waits an ingest resolved whose effects on their runs are written later (schema 25).

A sender's transaction that resolves a wait writes its event, the wait's mark in
``waits_resolved`` naming that event and the time (``event_id``, ``at``), and the run's wake; not
the three effects that concern the run alone: its waiting step's output (the event's payload),
its WAIT_MATCHED history row (which links the run to the event: ``event_runs``) and that step's
end. Those are *unfolded* while the mark names the event: every read derives them from it
(``derive_steps``, ``derived_history``, ``waits_of_run`` for ``load_run``; ``EVENT_RUNS`` reads
the marks' links), exactly as they will be written. ``fold`` writes them (and clears the mark's
event) in the first writer's transaction that writes anything else of the run, before it does:

- its lease (``lease_due``), for all the runs it takes with one read (a batch's resolutions
  written together, as the sender wrote them before), before a pass reads the run or the
  re-entry cap fails it; a commit of a pass whose run was woken while leased (``hold_lease``
  reads ``wake``: an event may have resolved another of its waits meanwhile), before the pass's
  rows, a timeout of another wait (``expire_waits`` holds the lease the same way) or its end;
- its cancellation (``mark_cancelled``), before RUN_CANCELLED;
- ``replay_run`` (before its steps are copied), ``purge_resolved_waits`` (before the marks go)
  and ``db copy`` (every one, before the snapshot).

The history's order is the one the sender would have written: an unfolded row comes after every
row of its run (anything written for the run folds first), and a run's unfolded rows in the
order the waits were resolved. The event is kept as long as a mark names it (``PURGE_EVENTS``).
A worker of the version before 25 would replay the wait without its event: the migration waits
for them to stop (``STOP_WORKERS_FIRST``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from stepline.serde import dumps_exact
from stepline.store import _rows as shapes
from stepline.store.records import HistoryRecord, StepRecord, WaitRecord
from stepline.store.sqlite import _wait_queries as w
from stepline.store.sqlite._event_rows import event_id_data
from stepline.store.sqlite._multirow import blob, insert_rows

_NULL = b"null"


class Unfolded(NamedTuple):
    """A resolved wait whose effects are not written yet: its step's output is its event's
    payload as JSON, as the sender would have written it (``null`` if the event were gone, as
    a wait that ended without one: it cannot be, the retention keeps it)."""

    run_id: str
    event_id: str
    at: float
    step_hash: str
    step_id: str | None
    output: bytes


def unfolded(conn: sqlite3.Connection, run_ids: Sequence[str]) -> list[Unfolded]:
    """The unfolded resolutions of these runs, by run, each run's in the order of resolution
    (one statement: ``UNFOLDED_OF_RUNS``, with their events)."""
    if not run_ids:
        return []
    return _unfolded(conn.execute(w.UNFOLDED_OF_RUNS, (dumps_exact(list(run_ids)).decode(),)))


def _unfolded(rows: Iterable[Sequence[Any]]) -> list[Unfolded]:
    """``Unfolded`` of UNFOLDED's rows (the mark, the wait, the event), each event's payload
    encoded once (``payload_json``)."""
    encoded: dict[str, bytes] = {}
    found: list[Unfolded] = []
    for run_id, event_id, at, step_hash, step_id, *event in rows:
        output = encoded.get(event_id)
        if output is None:
            output = encoded[event_id] = payload_json(event_id, *event)
        found.append(Unfolded(run_id, event_id, at, step_hash, step_id, output))
    return found


def payload_json(
    event_id: str,
    name: str | None,
    data: bytes | None,
    user: bytes | None,
    sender_id: str | None,
    ts: float | None,
) -> bytes:
    """``dumps_exact(event.payload())`` of a stored event, from its row's columns (``null`` if
    it is gone): its data and user data are stored as ``dumps_exact`` wrote them (values that
    encode back to themselves: the edge's rule), so the payload's JSON is theirs put together,
    without decoding them to encode them again."""
    if name is None or data is None or user is None or ts is None:
        return _NULL
    identity = dumps_exact(sender_id if sender_id is not None else event_id)
    head = b'{"id":%s,"name":%s,"data":' % (identity, dumps_exact(name))
    return b'%s%s,"user":%s,"ts":%d}' % (head, data, user, int(ts * 1000))


def fold(conn: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    """Write the effects of these runs' unfolded resolutions (inside the caller's write
    transaction): each waiting step completed with its event's payload at the time of its
    resolution, its WAIT_MATCHED row, and the marks cleared of their events."""
    resolved = unfolded(conn, run_ids)
    if resolved:
        write(conn, resolved)
        runs = list(dict.fromkeys(u.run_id for u in resolved))
        conn.execute(w.FOLDED_AMONG, (dumps_exact(runs).decode(),))


def fold_all(conn: sqlite3.Connection) -> None:
    """``fold`` of every run (``db copy``, before its snapshot)."""
    write(conn, _unfolded(conn.execute(w.UNFOLDED)))
    conn.execute(w.FOLDED_ALL)


def write(conn: sqlite3.Connection, resolved: Sequence[Unfolded]) -> None:
    """Write the steps and WAIT_MATCHED rows of these unfolded resolutions, in their order."""
    if not resolved:
        return
    conn.executemany(
        w.COMPLETE_STEP, [(blob(u.output), u.at, u.run_id, u.step_hash) for u in resolved]
    )
    if all(u.step_id is not None for u in resolved):
        rows = [(u.run_id, u.at, u.step_id, event_id_data(u.event_id)) for u in resolved]
        insert_rows(conn, w.INSERT_WAIT_MATCHED, rows)
    else:  # a wait stored without its step's id (schema 18): the step is read
        reading = [
            (u.run_id, u.at, u.step_id, u.run_id, u.step_hash, event_id_data(u.event_id))
            for u in resolved
        ]
        conn.executemany(w.INSERT_WAIT_MATCHED_READING_STEP, reading)


def derive_steps(steps: list[StepRecord], resolved: Sequence[Unfolded]) -> list[StepRecord]:
    """``steps`` (of the runs of ``resolved``) as ``fold`` would leave them: each waiting step of
    an unfolded resolution completed with its event's payload at the time of the resolution."""
    if not resolved:
        return steps
    ended = {(u.run_id, u.step_hash): u for u in resolved}
    derived: list[StepRecord] = []
    for step in steps:
        u = ended.get((step.run_id, step.hash))
        if u is not None:
            step = replace(step, status="COMPLETED", output_json=u.output, ended_at=u.at)
        derived.append(step)
    return derived


def derived_history(resolved: Sequence[Unfolded], step_ids: dict[str, str]) -> list[HistoryRecord]:
    """The WAIT_MATCHED rows ``fold`` would write for these unfolded resolutions, in order
    (``step_ids``: the step id by step hash, for a wait stored without it)."""
    return [
        HistoryRecord(
            u.run_id,
            u.at,
            "WAIT_MATCHED",
            u.step_id if u.step_id is not None else step_ids.get(u.step_hash),
            data={"event_id": u.event_id},
        )
        for u in resolved
    ]


def waits_of_run(conn: sqlite3.Connection, run_id: str) -> tuple[list[WaitRecord], list[Unfolded]]:
    """A run's pending waits (``WAITS_OF_RUN``'s records) and its unfolded resolutions, read
    together (``load_run``: a leased run has none, its lease folded them)."""
    pending: list[WaitRecord] = []
    resolved = False
    for r in conn.execute(w.WAITS_OF_RUN_WITH_UNFOLDED, (run_id,)):
        if r[10] is None:
            pending.append(shapes.wait_record(r[:10]))
        else:
            resolved = True
    return pending, unfolded(conn, [run_id]) if resolved else []
