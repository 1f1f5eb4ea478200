"""Events as the SQLite store reads them back, and the data of the WAIT_MATCHED row that links a
resumed run to its event (schema 23)."""

from __future__ import annotations

import sqlite3

from stepline.serde import dumps_exact
from stepline.store import _rows as shapes
from stepline.store.records import EventRecord
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._derived import by_ids


def event_id_data(event_id: str) -> str:
    """The data of the WAIT_MATCHED row of a wait the event ``event_id`` resolved (the runs an
    event resumed are read by it: ``EVENT_RUNS``)."""
    if event_id.isascii() and event_id.isalnum():  # Stepline's ids: nothing to escape
        return f'{{"event_id":"{event_id}"}}'
    return dumps_exact({"event_id": event_id}).decode()


def select_events(conn: sqlite3.Connection, ids: list[str]) -> list[EventRecord]:
    """The events of these ids that are stored, in their order: the events table's, and the
    announcements kept as a row (schema 27, ``_derived``) for the ids it does not hold."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    statement = f"SELECT {q.EVENT_COLUMNS} FROM events WHERE internal_id IN ({marks})"
    found = conn.execute(statement, ids)
    by_id = {r[0]: shapes.event_record(r) for r in found}
    if len(by_id) < len(ids):
        missing = [i for i in dict.fromkeys(ids) if i not in by_id]
        for internal_id, row in by_ids(conn, missing).items():
            by_id[internal_id] = shapes.event_record(row)
    return [by_id[i] for i in ids if i in by_id]
