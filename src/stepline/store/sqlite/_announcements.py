"""What the SQLite store reads and writes to announce the runs a transaction cancelled
(``run_events``, and the ``UnheardEvents`` verbs of ``_SQLiteTx``).

A cancelled run's ending events carry its trigger events (``engine/_system_events.py``). The
runs a transaction cancelled have their trigger events read together, with one statement, and
``encoded_run_events`` gives each one's payload as JSON made of its stored columns (its data and
user data are stored as the JSON ``dumps_exact`` made of them): the bytes
``dumps_exact(event.payload())`` would give, without decoding the event first. The
announcements nothing hears are written with one multi-row statement per ``_multirow.CHUNK``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson

from stepline.serde import dumps_exact, loads
from stepline.store import _rows as shapes
from stepline.store.records import EventRecord
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._multirow import blob, insert_rows

# EventRecord.payload()'s keys, in its order
_PAYLOAD = b'{"id":%b,"name":%b,"data":%b,"user":%b,"ts":%d}'


class CancelledRunEvents:
    """The trigger events of the runs a transaction cancelled (or whose owed announcements it
    makes): their ids, noted by ``mark_cancelled`` from the run row it read (a run's events
    never change) or with the owed announcement (OWED_ANNOUNCEMENTS), with whether the run
    has one event (its announcements are then kept as a row, schema 27: nothing of the event
    is needed); the events themselves read together the first time one is asked for."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # run id -> its event ids (JSON), noted when cancelled
        self._one: set[str] = set()  # runs of one event, so read
        self._read: dict[str, list[EventRecord]] = {}

    def note(self, run_id: str, row: Sequence[Any]) -> None:
        """A run cancelled, as ``mark_cancelled`` read it: UNFINISHED_RUN_FUNCTION's columns
        (or MATCHER_ROWS_AMONG_WITH_RUNS's of the run), the last one whether it has one event."""
        self.known(run_id, row[3], row[5:])

    def known(self, run_id: str, ids: str, one: Sequence[Any]) -> None:
        """A run's event ids (JSON) and whether it has one event (``one[0]``; NULL for a run
        gone): a run this transaction cancelled, or one whose announcements were owed
        (OWED_ANNOUNCEMENTS)."""
        self.ids[run_id] = ids
        if one and one[0]:
            self._one.add(run_id)

    def has_one_event(self, run_id: str) -> bool:
        """Whether a run this transaction cancelled (or whose announcements were owed) has one
        trigger event."""
        return run_id in self._one

    def records(self, conn: sqlite3.Connection, run_id: str) -> list[EventRecord] | None:
        """The events of a run this transaction cancelled (None: it did not cancel it), read
        with those of every such run not read yet."""
        if run_id not in self.ids:
            return None
        if run_id not in self._read:
            unread = {r: loads(ids) for r, ids in self.ids.items() if r not in self._read}
            found = {row[0]: shapes.event_record(row) for row in _rows(conn, unread.values())}
            for unread_run, ids in unread.items():
                self._read[unread_run] = [found[i] for i in ids if i in found]
        return self._read[run_id]

    def encoded(
        self, conn: sqlite3.Connection, run_ids: Sequence[str]
    ) -> list[list[tuple[str, bytes]]]:
        """``UnheardEvents.encoded_run_events``: one statement for the events of all the runs
        (and one for the event ids of the runs this transaction did not cancel)."""
        if not run_ids:
            return []
        known = self.ids
        unknown = [r for r in run_ids if r not in known]
        read = _event_ids_of(conn, unknown) if unknown else {}
        ids_of = [loads(known.get(run_id) or read.get(run_id, "[]")) for run_id in run_ids]
        found = {row[0]: (row[1], payload_json(row)) for row in _rows(conn, ids_of)}
        return [[found[i] for i in ids if i in found] for ids in ids_of]


def payload_json(row: Sequence[Any]) -> bytes:
    """The payload of the event of an ``EVENTS_AMONG`` row as JSON: ``dumps_exact`` of
    ``shapes.event_record(row).payload()``, made of the stored columns."""
    internal_id, name, data, user, sender_id, ts, v = row
    payload = _PAYLOAD % (
        orjson.dumps(internal_id if sender_id is None else sender_id),
        orjson.dumps(name),
        data if type(data) is bytes else data.encode(),
        user if type(user) is bytes else user.encode(),
        int(ts * 1000),
    )
    return payload if v is None else b'%b,"v":%b}' % (payload[:-1], orjson.dumps(v))


def insert_unheard(
    conn: sqlite3.Connection, events: Sequence[tuple[str, str, bytes]], now: float
) -> None:
    """INSERT_UNHEARD_EVENT of each event (id, name, data), in its order. A cancelled run's two
    announcements (the usual batch: pairs of the same two names, each pair one data) are
    written ``_PAIRS`` pairs a statement whose time and two names are bound once and each
    pair's data once (``_paired``): 3 parameters a pair instead of 10, and SQLite copies the
    data once. Any other list: a row each (``unheard_rows``)."""
    if not _in_pairs(events):
        insert_rows(conn, q.INSERT_UNHEARD_EVENT, unheard_rows(events, now))
        return
    first, second = events[0][1], events[1][1]
    pairs = len(events) // 2
    for start in range(0, pairs, _PAIRS):
        count = min(_PAIRS, pairs - start)
        params: list[Any] = [now, first, second]
        for at in range(2 * start, 2 * (start + count), 2):
            params += (events[at][0], events[at + 1][0], blob(events[at][2]))
        conn.execute(_paired(count), params)


_PAIRS = 50  # pairs a statement: 150 parameters and 3 (under the 999 of SQLite before 3.32)


def _in_pairs(events: Sequence[tuple[str, str, bytes]]) -> bool:
    """Whether ``events`` are pairs of two names, the same two in each pair, each pair sharing
    its data (the same object)."""
    if not events or len(events) % 2:
        return False
    first, second = events[0][1], events[1][1]
    for at in range(0, len(events), 2):
        one, other = events[at], events[at + 1]
        if one[1] != first or other[1] != second or one[2] is not other[2]:
            return False
    return True


@lru_cache(maxsize=8)
def _paired(count: int) -> str:
    """INSERT_UNHEARD_EVENT of ``count`` pairs: ?1 the time, ?2 and ?3 the two names, then
    each pair's two ids and its data."""
    head, _ = q.INSERT_UNHEARD_EVENT.rsplit("VALUES", 1)
    rows = []
    for pair in range(count):
        at = 4 + 3 * pair
        data = f"?{at + 2}, X'7B7D', ?1, ?1, 0"
        rows.append(f"(?{at}, ?2, {data}), (?{at + 1}, ?3, {data})")
    return f"{head}VALUES {', '.join(rows)}"


def unheard_rows(events: Sequence[tuple[str, str, bytes]], now: float) -> list[tuple[Any, ...]]:
    """INSERT_UNHEARD_EVENT's parameters of each event (id, name, data): the data of events
    that share their encoded bytes (a cancelled run's two announcements) copied once."""
    rows: list[tuple[Any, ...]] = []
    last: bytes | None = None
    data = bytearray()
    for internal_id, name, encoded in events:
        if encoded is not last:
            last, data = encoded, blob(encoded)
        rows.append((internal_id, name, data, now, now))
    return rows


def _event_ids_of(conn: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, str]:
    """The event ids (JSON) of each of these runs that is stored, read with one statement
    (runs this transaction did not cancel: those whose announcements were owed, schema 24)."""
    rows = conn.execute(q.RUNS_EVENT_IDS_AMONG, (dumps_exact(list(run_ids)).decode(),))
    return {run_id: str(ids) for run_id, ids in rows}


def _rows(conn: sqlite3.Connection, ids_of: Iterable[list[str]]) -> list[Any]:
    """The EVENTS_AMONG rows of the events listed in ``ids_of`` (lists of ids), each once."""
    wanted = list(dict.fromkeys(i for ids in ids_of for i in ids))
    if not wanted:
        return []
    return conn.execute(q.EVENTS_AMONG, (dumps_exact(wanted).decode(),)).fetchall()
