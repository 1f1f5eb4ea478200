"""The announcements of cancelled runs kept as one ``cancel_announcements`` row (schema 27), read
back as the two events they stand for: ``inngest/function.finished`` (the row's id) and
``inngest/function.cancelled`` (the next id), received and sent at the row's time, no user data,
no sender id, their data made again from the run's function and trigger event with the code the
sender's announcements are made with (``store/_cancelled_data.py``: the same bytes).

A row is kept for a run of one trigger event (the run of several has its announcements stored
as events); its run and that event are kept while it is (the run's ``run_events`` row holds the
event; a run and its announcements are due for the purge at the same time: the run ended when
they were sent). A row whose run is gone (purged by a process of schema 26) is no event, nor
one of a run started by an announcement (written without reading the run's event: such a run
announces nothing, ``ending_names_after``).

Each reader of events (``_event_rows.select_events``, ``reads.list_events``,
``tx.events_received``, the purge, ``db copy``) reads the events table and these rows and
merges them in its order: (received_at, internal_id). A SQL view of both does not serve: SQLite
does not flatten a UNION ALL whose arm is a join (each list would read every event and sort).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import orjson

from stepline.serde import dumps_exact
from stepline.store._cancelled_data import (
    CANCELLED_NAMES,
    FUNCTION_FAILED,
    FUNCTION_FINISHED,
    cancelled_data,
)
from stepline.store.records import EventFilter
from stepline.store.sqlite._announcements import payload_json

# a row, its run's function and its trigger event (EVENTS_AMONG's columns); none for a run
# started by an announcement (the row was written without reading its event: it announces
# nothing, ``ending_names_after``)
_JOINED = f"""
FROM cancel_announcements AS a
JOIN runs AS r ON r.run_id = a.run_id
JOIN events AS e ON e.internal_id = json_extract(r.event_ids, '$[0]')
WHERE e.name NOT IN ('{FUNCTION_FINISHED}', '{FUNCTION_FAILED}')"""
_DERIVED = f"""
SELECT a.received_at, a.internal_id, a.reason, a.run_id, r.function_id,
       e.internal_id, e.name, e.data, e.user_data, e.sender_id, e.ts, e.v{_JOINED}"""
# the rows of some first ids (JSON) received in a time window: an id's time is its millisecond
# (an id is looked up as the first of its pair and as the second: the id before it)
_BY_IDS = f"""{_DERIVED}
  AND a.received_at >= ? AND a.received_at < ?
  AND a.internal_id IN (SELECT value FROM json_each(?))"""
_RECEIVED = f"""{_DERIVED}
  AND a.received_at >= ? AND a.received_at <= ? ORDER BY a.received_at, a.internal_id"""
_LISTED = f"{_DERIVED}{{where}}\nORDER BY a.received_at DESC, a.internal_id DESC LIMIT ?"
# newest first, without a limit: ``listed_by_id`` reads as far as it needs
_NEWEST = f"{_DERIVED}{{where}}\nORDER BY a.received_at DESC, a.internal_id DESC"
_COUNT = f"SELECT count(*){_JOINED}"
_ALL = f"{_DERIVED}\nORDER BY a.received_at, a.internal_id"
# the rows of runs started by an announcement among those just written at a time (their ids
# are no events)
_SILENT = f"""
SELECT a.internal_id FROM cancel_announcements AS a
JOIN runs AS r ON r.run_id = a.run_id
JOIN events AS e ON e.internal_id = json_extract(r.event_ids, '$[0]')
WHERE a.received_at = ? AND a.internal_id IN (SELECT value FROM json_each(?))
  AND e.name IN ('{FUNCTION_FINISHED}', '{FUNCTION_FAILED}')"""
# the events the rows received before a time stand for (``purge_before``), up to a limit
_DUE = f"""
SELECT count(*) FROM (
  SELECT run_id FROM cancel_announcements WHERE received_at < ? ORDER BY received_at LIMIT ?)
  AS a
JOIN runs AS r ON r.run_id = a.run_id
JOIN events AS e ON e.internal_id = json_extract(r.event_ids, '$[0]')
WHERE e.name NOT IN ('{FUNCTION_FINISHED}', '{FUNCTION_FAILED}')"""
_PURGE = """
DELETE FROM cancel_announcements WHERE (received_at, internal_id) IN (
  SELECT received_at, internal_id FROM cancel_announcements WHERE received_at < ?
  ORDER BY received_at LIMIT ?)"""
WIPE = "DELETE FROM cancel_announcements"

# an event row as EVENTS_AMONG reads it: internal_id, name, data, user_data, sender_id, ts, v
EventRow = tuple[str, str, bytes, bytes, None, float, None]
_NO_USER_DATA = b"{}"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGIT = {c: i for i, c in enumerate(_CROCKFORD)}
_DIGITS = frozenset(_CROCKFORD)
_TO_BASE32 = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")  # int(..., 32)
_SLACK = 0.002  # seconds around an id's millisecond (a float's rounding either way)


def insert_announcements(
    conn: sqlite3.Connection, rows: Sequence[tuple[str, str]], now: float, reason: str
) -> None:
    """A row for each (first id, run id) of ``rows``, sent at ``now`` for ``reason``: ``_CHUNK``
    rows a statement, the time and the reason bound once."""
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        params: list[Any] = [now, reason]
        for pair in chunk:
            params += pair
        conn.execute(_insert(len(chunk)), params)


_CHUNK = 400  # 2 + 2 x 400 parameters: under the 999 of SQLite before 3.32


@lru_cache(maxsize=8)
def _insert(count: int) -> str:
    rows = ", ".join(f"(?1, ?{3 + 2 * i}, ?{4 + 2 * i}, ?2)" for i in range(count))
    return f"{_INSERT} VALUES {rows}"


_INSERT = "INSERT OR IGNORE INTO cancel_announcements (received_at, internal_id, run_id, reason)"


def silent(conn: sqlite3.Connection, first_ids: Sequence[str], now: float) -> set[str]:
    """Those of the rows just written at ``now`` (by their first ids) whose run was started by
    an announcement: their ids are no events (the row was written without reading the run's
    event, which is read when the row is)."""
    found = conn.execute(_SILENT, (now, dumps_exact(list(first_ids)).decode()))
    return {row[0] for row in found}


def purge(conn: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """Delete up to ``limit`` rows received before ``cutoff``, the oldest first; how many events
    they stood for. Before the runs' purge: a row whose run is gone stands for none."""
    events = 2 * int(conn.execute(_DUE, (cutoff, limit)).fetchone()[0])
    conn.execute(_PURGE, (cutoff, limit))
    return events


def _events(row: Sequence[Any], names: Sequence[str] = CANCELLED_NAMES) -> list[EventRow]:
    """The events a ``_DERIVED`` row stands for, of these names (``CANCELLED_NAMES``' order)."""
    received_at, first_id, reason, run_id, function_id, *event = row
    payload = payload_json(event)
    quote = orjson.dumps
    data = cancelled_data(quote(function_id), quote(run_id), [(event[1], payload)], quote(reason))
    finished, cancelled = CANCELLED_NAMES
    made: list[EventRow] = []
    if finished in names:
        made.append((first_id, finished, data, _NO_USER_DATA, None, received_at, None))
    if cancelled in names:
        made.append((id_after(first_id), cancelled, data, _NO_USER_DATA, None, received_at, None))
    return made


def by_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, EventRow]:
    """The announcements among ``ids`` (the ids the events table does not hold), by id: one
    statement for the ids of each millisecond (its window of the rows' order read once)."""
    firsts: dict[int, list[str]] = {}  # millisecond -> the first ids that may be asked for
    for internal_id in ids:
        value = _value(internal_id)
        if value is not None:
            before = id_before(internal_id)
            firsts.setdefault(value >> 80, []).extend((internal_id, before or internal_id))
    wanted = set(ids)
    found: dict[str, EventRow] = {}
    for millis, candidates in firsts.items():
        at = millis / 1000
        params = (at - _SLACK, at + _SLACK, dumps_exact(candidates).decode())
        for row in conn.execute(_BY_IDS, params):
            for event in _events(row):
                if event[0] in wanted:
                    found[event[0]] = event
    return found


def _received_between(query: EventFilter) -> tuple[list[str], list[Any]]:
    """The announcement rows' clauses (and their parameters) of ``query``'s received-time
    bounds."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.received_after is not None:
        clauses.append("a.received_at >= ?")
        params.append(query.received_after)
    if query.received_before is not None:
        clauses.append("a.received_at <= ?")
        params.append(query.received_before)
    return clauses, params


def listed(conn: sqlite3.Connection, query: EventFilter) -> list[tuple[Any, ...]]:
    """The announcements ``LIST_EVENTS`` would list for ``query`` (its rows' shape: the event's
    columns, received_at, duplicate), newest first, up to its limit."""
    names = _names(query)
    if not names:
        return []
    if query.internal_id is not None:
        return _the_one(conn, query, names)
    clauses, params = _received_between(query)
    if query.after is not None:  # a row whose first id is before it: its second may be too
        clauses.append("(a.received_at, a.internal_id) < (?, ?)")
        params.extend(query.after)
    where = "".join(f"\n  AND {clause}" for clause in clauses)
    # one row more: the row whose second event is the cursor's stands for one event past it
    rows = conn.execute(_LISTED.format(where=where), [*params, query.limit + 1])
    made = [(*e, e[5], 0) for row in rows for e in reversed(_events(row, names))]
    if query.after is not None:
        after = query.after
        made = [e for e in made if (e[7], e[0]) < after]
    return made[: query.limit]


def listed_by_id(conn: sqlite3.Connection, query: EventFilter) -> list[tuple[Any, ...]]:
    """The announcements ``LIST_EVENTS_BY_ID`` would list for ``query`` (``id_below`` set), in
    ``listed``'s rows' shape, by id (newest first), up to its limit. The rows are read newest
    first by their key (received_at, first id) from the cursor's time down, and no further
    than the one received before the millisecond of the limit-th id found (an id's first 48
    bits are its row's ``received_at``, within ``_SLACK``): the rows after it have smaller ids
    (no index by id: it would be one more B-tree written by every cancellation)."""
    names = _names(query)
    below = query.id_below
    if not names or below is None or query.limit <= 0:
        return []
    if query.internal_id is not None:
        return _the_one(conn, query, names)
    clauses, params = _received_between(query)
    millis = _millis(below)
    if millis is not None:  # an id below it was made in its millisecond or before
        clauses.append("a.received_at < ?")
        params.append((millis + 1) / 1000 + _SLACK)
    where = "".join(f"\n  AND {clause}" for clause in clauses)
    found: list[tuple[Any, ...]] = []
    for row in conn.execute(_NEWEST.format(where=where), params):
        if len(found) >= query.limit:
            found.sort(key=lambda e: e[0], reverse=True)
            del found[query.limit :]
            last = _millis(found[-1][0])
            if last is not None and (row[0] + _SLACK) * 1000 < last:
                break
        found += [(*e, e[5], 0) for e in _events(row, names) if e[0] < below]
    found.sort(key=lambda e: e[0], reverse=True)
    return found[: query.limit]


def _millis(internal_id: str) -> int | None:
    """The millisecond the first 48 bits of an id say (``_ids``' layout), None for text that is
    not 26 Crockford digits. For any such text (a ULID too), every id below it says that
    millisecond or an earlier one."""
    if len(internal_id) != 26 or not _DIGITS.issuperset(internal_id):
        return None
    return int(internal_id.translate(_TO_BASE32), 32) >> 82


def received(
    conn: sqlite3.Connection, name: str, after: tuple[float, str], until: float
) -> list[tuple[float, EventRow]]:
    """The announcements named ``name`` that ``EVENTS_RECEIVED`` would read: received after
    ``after`` (received_at, internal_id) and at or before ``until``, oldest first."""
    names = _named(name)
    if not names:
        return []
    found: list[tuple[float, EventRow]] = []
    for row in conn.execute(_RECEIVED, (after[0], until)):
        for event in _events(row, names):
            if (event[5], event[0]) > after:
                found.append((event[5], event))
    return found


def count(conn: sqlite3.Connection) -> int:
    """How many events the rows stand for (``db copy``'s plan)."""
    return 2 * int(conn.execute(_COUNT).fetchone()[0])


def every_event(conn: sqlite3.Connection, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """Each event the rows stand for as a row of the events table (``db copy``: the target
    stores them as events), ``batch`` rows at a time (a row's two in the same batch or not)."""
    cursor = conn.execute(_ALL)
    while chunk := cursor.fetchmany(max(1, batch // 2)):
        yield [(*e, e[5], 0) for row in chunk for e in _events(row)]


def _the_one(
    conn: sqlite3.Connection, query: EventFilter, names: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The announcement ``query.internal_id``, as a listed row, if it is one and ``query``'s
    other filters keep it."""
    internal_id = query.internal_id
    assert internal_id is not None
    event = by_ids(conn, [internal_id]).get(internal_id)
    if event is None or event[1] not in names:
        return []
    at = event[5]  # received when sent (``_events``)
    kept = (
        (query.received_after is None or at >= query.received_after)
        and (query.received_before is None or at <= query.received_before)
        and (query.after is None or (at, internal_id) < query.after)
        and (query.id_below is None or internal_id < query.id_below)
    )
    return [(*event, at, 0)] if kept and query.limit > 0 else []


def _names(query: EventFilter) -> Sequence[str]:
    """The names of the announcements ``query`` keeps (by its name, and none when it leaves
    out Inngest's own events: every announcement is one)."""
    return _named(query.name) if query.include_internal else ()


def _named(name: str | None) -> Sequence[str]:
    """The names of the announcements a filter by ``name`` (None: any) keeps."""
    if name is None:
        return CANCELLED_NAMES
    return (name,) if name in CANCELLED_NAMES else ()


def _value(internal_id: str) -> int | None:
    """The 128-bit value of a Stepline id (None: not one)."""
    if len(internal_id) != 26 or not _DIGITS.issuperset(internal_id) or _DIGIT[internal_id[-1]] & 3:
        return None
    return int(internal_id.translate(_TO_BASE32), 32) >> 2


def _text(value: int) -> str:
    """The id of a 128-bit value (``_ids``' layout: 26 Crockford digits, the last 2 bits 0)."""
    v = (value % (1 << 128)) << 2
    return "".join(_CROCKFORD[(v >> (5 * (25 - at))) & 31] for at in range(26))


def id_after(internal_id: str) -> str:
    """The id after a Stepline id (the second of a pair ``new_ids`` made): its last digit
    (the value's 3 low bits, then two 0 bits) moved on, unless they are all 1 (a carry)."""
    last = _DIGIT.get(internal_id[-1], 28) if len(internal_id) == 26 else 28
    if last < 28 and not last & 3:
        return internal_id[:25] + _CROCKFORD[last + 4]
    value = _value(internal_id)
    if value is None:
        raise ValueError(f"not a Stepline id: {internal_id!r}")
    return _text(value + 1)


def id_before(internal_id: str) -> str | None:
    """The id before a Stepline id (None: not one): its last digit moved back, unless the
    value's 3 low bits are all 0 (a borrow)."""
    last = _DIGIT.get(internal_id[-1], 0) if len(internal_id) == 26 else 0
    if last and not last & 3 and _DIGITS.issuperset(internal_id):
        return internal_id[:25] + _CROCKFORD[last - 4]
    value = _value(internal_id)
    return None if value is None else _text(value - 1)
