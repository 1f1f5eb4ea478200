"""The SQLite side of ``store/_copy.py``: a file's tables read in one snapshot and loaded in
batches (one ``BEGIN IMMEDIATE`` transaction per batch)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from stepline.store._copy import TABLES, CopyRefused, Row, Table, normalized
from stepline.store.sqlite import _derived
from stepline.store.sqlite._wait_queries import PENDING
from stepline.store.sqlite.queries import COUNT_OWED_ANNOUNCEMENTS, RESUMED_RUN_EVENTS

# the runs whose announcements are still to be written (schema 24): not copied; a source with
# any is refused until a worker wrote them (``refuse_owed``), so none is lost
OWED = "owed_announcements"
# the announcements kept as a row (schema 27): copied as the events they stand for (``_derived``)
KEPT_AS_ROWS = "cancel_announcements"


def _rows_of(table: Table) -> str:
    if table.name == "waits":  # a resolved wait's row is kept until a purge: not copied
        return f"{table.name} WHERE {PENDING}"
    if table.name == "run_events":  # with the resumed runs' links kept in history (schema 23)
        return f"(SELECT * FROM run_events UNION {RESUMED_RUN_EVENTS})"
    return table.name


def select_all(table: Table) -> str:
    columns = ", ".join(table.columns)
    return f"SELECT {columns} FROM {_rows_of(table)} ORDER BY {', '.join(table.key)}"


def insert(table: Table) -> str:
    marks = ", ".join("?" for _ in table.columns)
    return f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})"


def table_columns(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            f"AND name NOT IN ('schema_version', '{OWED}', '{KEPT_AS_ROWS}')"
        )
    ]
    return {name: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({name})")) for name in names}


def refuse_owed(conn: sqlite3.Connection) -> None:
    """Refuse to copy a file while announcements of cancelled runs are owed (schema 24): a
    worker (or a sender's engine as it closes) writes them, as events; the copy carries them
    then."""
    [(owed,)] = conn.execute(COUNT_OWED_ANNOUNCEMENTS).fetchall()
    if owed:
        raise CopyRefused(
            f"the announcements of {owed} cancelled runs are still to be written: run a worker"
            " on the source (e.g. stepline dev) until they are, then copy"
        )


class SQLiteSnapshot:
    """A read transaction on its own connection: in WAL mode it sees the file as of its first
    read while writers carry on."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def count(self, table: Table) -> int:
        row = self._conn.execute(f"SELECT count(*) FROM {_rows_of(table)}").fetchone()
        if table.name == "events":  # and those of the announcements kept as a row
            return int(row[0]) + _derived.count(self._conn)
        return int(row[0])

    def rows(self, table: Table, batch: int) -> Iterator[list[Row]]:
        cursor = self._conn.execute(select_all(table))
        while chunk := cursor.fetchmany(batch):
            yield [normalized(table, r) for r in chunk]
        if table.name == "events":  # the announcements kept as a row, as events
            for kept in _derived.every_event(self._conn, batch):
                yield [normalized(table, r) for r in kept]


def load_rows(conn: sqlite3.Connection, table: Table, rows: Sequence[Row]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(insert(table), rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def wipe(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_derived.WIPE)
        for table in TABLES:
            conn.execute(f"DELETE FROM {table.name}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
