"""Many rows in few statements.

Each execution of a statement opens a cursor on its table and on each of the table's indexes,
so ``executemany`` of a one-row INSERT (or of an UPDATE or DELETE by key) pays that once per
row. A batch of events writes 1,000 rows at a time into tables of 2-5 B-trees (events,
history, run_events, queue, waits), where a statement of ``CHUNK`` rows costs 25-40 % less a
row (measured on a copy of the wait-matching bench's database). The rows are written in their
order, with the same conflict rules; the statements of a full chunk are prepared once per
connection (the sqlite3 module's statement cache), the rows past the last full chunk go
through ``executemany``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

CHUNK = 100  # x <= 9 parameters a row: under the 999 of SQLite before 3.32
_flat = chain.from_iterable  # the rows' values, one after the other


def blob(data: bytes) -> bytearray:
    """``data`` to bind as a BLOB parameter of a statement run per row. The sqlite3 module binds
    an ``int``, ``float``, ``str`` or ``bytearray`` at once, but looks every other type (``bytes``
    too) up as an adaptable object first: on Python 3.11 that raises and clears an
    AttributeError (``PrepareProtocol.__adapt__``), ~0.4 us a parameter, more than the copy.
    The value stored is the same BLOB. (A ``None`` costs the same: a statement that writes
    NULL itself spares it.)"""
    return bytearray(data)


def insert_rows(conn: sqlite3.Connection, insert: str, rows: Sequence[Sequence[Any]]) -> None:
    """``conn.executemany(insert, rows)`` for a one-row ``INSERT ... VALUES (...)``, in
    multi-row statements."""
    full = len(rows) - len(rows) % CHUNK
    if full:
        many = _values(insert, CHUNK)
        for start in range(0, full, CHUNK):
            conn.execute(many, list(_flat(rows[start : start + CHUNK])))
    if full < len(rows):
        conn.executemany(insert, rows[full:])


def insert_sharing(
    conn: sqlite3.Connection, insert: str, key_rows: Sequence[Any], shared: Sequence[Any]
) -> None:
    """``insert_rows(conn, insert, [(key, *shared) for key in key_rows])`` for rows that differ
    in their first value only (a run's id, in rows the same for every run of a verb): the
    shared values bound once a statement (``_sharing``), one parameter a row."""
    for start in range(0, len(key_rows), CHUNK):
        keys = key_rows[start : start + CHUNK]
        conn.execute(_sharing(insert, len(keys), len(shared)), (*shared, *keys))


def insert_shared(
    conn: sqlite3.Connection, insert: str, rows: Sequence[Sequence[Any]], shared: Sequence[Any]
) -> None:
    """``conn.executemany`` of a one-row ``INSERT ... VALUES (...)`` whose ``?1`` ... ``?<n>``
    are the ``n`` values of ``shared`` (the same in every row: bound once a statement) and
    whose bare ``?`` are each row's own values, in their order (``rows``), in multi-row
    statements: fewer parameters to bind (a parameter costs the sqlite3 module and SQLite
    ~0.7k instructions to bind, a BLOB or text copied)."""
    full = len(rows) - len(rows) % CHUNK
    if full:
        many = _numbered(insert, CHUNK, len(shared))
        for start in range(0, full, CHUNK):
            conn.execute(many, [*shared, *_flat(rows[start : start + CHUNK])])
    if full < len(rows):
        one = _numbered(insert, 1, len(shared))
        conn.executemany(one, [(*shared, *row) for row in rows[full:]])


def update_among(
    conn: sqlite3.Connection, update: str, among: str, params: tuple[Any, ...], keys: Sequence[Any]
) -> None:
    """``conn.executemany(update, [(*params, key) for key in keys])`` for an ``update`` whose
    last parameter is its row's key, made as ``among``: the same statement with ``IN ({})`` in
    place of ``= ?`` (a key listed twice is updated once, as the same update made twice)."""
    full = len(keys) - len(keys) % CHUNK
    if full:
        many = _among(among, CHUNK)
        for start in range(0, full, CHUNK):
            conn.execute(many, (*params, *keys[start : start + CHUNK]))
    if full < len(keys):
        conn.executemany(update, [(*params, key) for key in keys[full:]])


def write_among(
    conn: sqlite3.Connection, one: str, among: str, rows: Sequence[Sequence[Any]]
) -> int:
    """``conn.executemany(one, rows)`` for a statement of one row's parameters, made as
    ``among``: the same statement reading the rows from ``(VALUES {})`` (``{}``: a
    ``(?, ...)`` per row). Returns the rows the statements changed."""
    before = conn.total_changes
    full = len(rows) - len(rows) % CHUNK
    if full:
        many = _rows_among(among, CHUNK, len(rows[0]))
        for start in range(0, full, CHUNK):
            conn.execute(many, list(_flat(rows[start : start + CHUNK])))
    if full < len(rows):
        conn.executemany(one, rows[full:])
    return conn.total_changes - before


@lru_cache(maxsize=32)
def _rows_among(among: str, count: int, width: int) -> str:
    row = f"({', '.join(['?'] * width)})"
    return among.format(", ".join([row] * count))


@lru_cache(maxsize=32)
def _values(insert: str, count: int) -> str:
    head, values = insert.rsplit("VALUES", 1)
    return f"{head}VALUES {', '.join([values.strip()] * count)}"


@lru_cache(maxsize=32)
def _sharing(insert: str, count: int, shared: int) -> str:
    """``insert`` of ``count`` rows whose first parameter is the row's (?<shared + row>) and
    whose ``shared`` others are ?1 ... ?<shared>."""
    head, values = insert.rsplit("VALUES", 1)
    first, *rest = values.strip().split("?")
    if len(rest) != shared + 1:
        raise ValueError(f"{shared + 1} parameters expected in {insert!r}")
    tail = "".join(f"?{at}{text}" for at, text in enumerate(rest[1:], start=1))
    rows = [f"{first}?{shared + 1 + row}{rest[0]}{tail}" for row in range(count)]
    return f"{head}VALUES {', '.join(rows)}"


@lru_cache(maxsize=32)
def _numbered(insert: str, count: int, shared: int) -> str:
    """``insert`` of ``count`` rows (``insert_shared``): its ``?<k>`` (``k`` up to ``shared``)
    kept, each bare ``?`` numbered after the shared ones and the rows before it."""
    head, values = insert.rsplit("VALUES", 1)
    template = values.strip()
    own = sum(1 for number in _PARAMETER.findall(template) if not number)
    if any(number and int(number) > shared for number in _PARAMETER.findall(template)):
        raise ValueError(f"?1 ... ?{shared} expected as the shared values in {insert!r}")
    numbers = iter(range(shared + 1, shared + count * own + 1))

    def numbered(found: re.Match[str]) -> str:
        return found.group(0) if found.group(1) else f"?{next(numbers)}"

    rows = [_PARAMETER.sub(numbered, template) for _ in range(count)]
    return f"{head}VALUES {', '.join(rows)}"


_PARAMETER = re.compile(r"\?(\d*)")


@lru_cache(maxsize=32)
def _among(among: str, count: int) -> str:
    return among.format(", ".join(["?"] * count))
