"""The PostgreSQL side of ``store/_copy.py``: a database read in one REPEATABLE READ snapshot
(server-side cursors, a batch at a time) and loaded with ``COPY … FROM STDIN``, one transaction
per batch. A step's history line kept in its row (schema 17) is copied as a row of history, as
every other store holds it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from stepline.store._copy import TABLES, Row, Table
from stepline.store.postgres._read_queries import HISTORY_LINES

# the tables a copy reads and writes: not the schema's version (each side migrates), nor the
# hand-offs live workers offer (_handoffs.py: PostgreSQL's only; a copy refuses live workers),
# nor the rows written to wait for a flush (_statements.FLUSHED)
TABLE_COLUMNS = """
SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = current_schema()
  AND table_name NOT IN ('schema_version', 'handoffs', 'wal_flushes')
  AND table_name IN (
    SELECT table_name FROM information_schema.tables
    WHERE table_schema = current_schema() AND table_type = 'BASE TABLE')
ORDER BY table_name, ordinal_position"""


# where a database lives: the running server (its start, to the microsecond: readable by every
# role, where pg_control_system() may not be), the database and the schema the tables are in
LOCATION = "SELECT pg_postmaster_start_time()::text, current_database(), current_schema()"


def location(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(LOCATION).fetchone()
    return "postgresql " + " / ".join(str(value) for value in row or ())


# the columns of steps that hold a step's STEP_COMPLETED history line (schema 17): copied as
# that line, a row of history (``_from``), not as columns of steps
FOLDED = frozenset(
    ("history_seq", "history_ts", "history_attempt", "history_duration", "history_worker")
)


def _from(table: Table) -> str:
    """What ``table``'s rows are read from: history's are its rows and the lines in steps."""
    return f"({HISTORY_LINES}) AS history" if table.name == "history" else table.name


def select_all(table: Table) -> str:
    columns = ", ".join(table.columns)
    return f"SELECT {columns} FROM {_from(table)} ORDER BY {', '.join(table.key)}"


def copy_in(table: Table) -> str:
    return f"COPY {table.name} ({', '.join(table.columns)}) FROM STDIN"


def table_columns(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for name, column in conn.execute(TABLE_COLUMNS):
        if name == "steps" and column in FOLDED:
            continue
        found.setdefault(name, []).append(column)
    return {name: tuple(columns) for name, columns in found.items()}


class PostgresSnapshot:
    """Reads inside one REPEATABLE READ READ ONLY transaction: every table as of its start."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def count(self, table: Table) -> int:
        row = self._conn.execute(f"SELECT count(*) FROM {_from(table)}").fetchone()
        return int(row[0]) if row else 0

    def rows(self, table: Table, batch: int) -> Iterator[list[Row]]:
        with self._conn.cursor(name=f"stepline_copy_{table.name}") as cursor:
            cursor.itersize = batch
            cursor.execute(select_all(table))
            while chunk := cursor.fetchmany(batch):
                yield [tuple(r) for r in chunk]


def load_rows(conn: psycopg.Connection[Any], table: Table, rows: Sequence[Row]) -> None:
    """One transaction. COPY writes the given numbers into identity columns too."""
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(copy_in(table)) as copy:
        for row in rows:
            copy.write_row(row)


def loaded(conn: psycopg.Connection[Any], table: Table) -> None:
    """Numbers the database gives next (history, skips) follow the largest copied one."""
    if table.identity is None:
        return
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.identity}'), "
        f"coalesce(max({table.identity}), 0) + 1, false) FROM {table.name}"
    )


def wipe(conn: psycopg.Connection[Any]) -> None:
    names = ", ".join(table.name for table in TABLES)
    with conn.transaction():
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY")
