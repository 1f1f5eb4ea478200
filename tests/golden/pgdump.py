"""Stepline's PostgreSQL tables as data (the PostgreSQL golden database): ``dump`` writes every
row of every table, in COPY's text format, with the schema version that holds them; ``restore``
rebuilds that schema version in an empty database from the migrations (a migration never
changes once released), loads the rows, and leaves the newer migrations to ``migrate()``.

Identity columns (``seq``) are written too (recordings made before schema 17 left them out:
their restored database numbers the rows again, in the same order): a step's history line kept
in its row (schema 17, ``steps.history_seq``) holds a number of history's sequence, so the
numbers are kept as recorded, and each sequence goes on past the largest number restored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from stepline.store.postgres.schema import MIGRATIONS

_COLUMNS = """
SELECT table_name, column_name, is_identity = 'YES' FROM information_schema.columns
WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"""


def dump(url: str, target: Path) -> None:
    with psycopg.connect(url) as conn:
        [version] = conn.execute("SELECT MAX(version) FROM schema_version").fetchone() or [0]
        columns: dict[str, list[str]] = {}
        order: dict[str, str] = {}
        for table, column, identity in conn.execute(_COLUMNS):
            if table == "schema_version":
                continue
            if identity:
                order[table] = column
            columns.setdefault(table, []).append(column)
        tables: dict[str, Any] = {}
        for table, names in sorted(columns.items()):
            listed = ", ".join(f'"{c}"' for c in names)
            by = f' ORDER BY "{order[table]}"' if table in order else f" ORDER BY {listed}"
            copy = f'COPY (SELECT {listed} FROM "{table}"{by}) TO STDOUT'
            with conn.cursor().copy(copy.encode()) as out:
                text = b"".join(bytes(chunk) for chunk in out).decode()
            tables[table] = {"columns": names, "rows": text}
    document = {"schema_version": version, "tables": tables}
    target.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def restore(source: Path, url: str) -> int:
    """Load ``source`` into the empty database ``url``; returns its schema version."""
    document = json.loads(source.read_text())
    version: int = document["schema_version"]
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        for number, script in enumerate(MIGRATIONS[:version], start=1):
            conn.execute(script.encode())
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        for table, found in document["tables"].items():
            listed = ", ".join(f'"{c}"' for c in found["columns"])
            with conn.cursor().copy(f'COPY "{table}" ({listed}) FROM STDIN'.encode()) as into:
                into.write(found["rows"].encode())
        for table, column, identity in conn.execute(_COLUMNS).fetchall():
            if identity and column in document["tables"].get(table, {}).get("columns", ()):
                numbers = f'SELECT max("{column}") FROM "{table}"'
                if table == "history" and version >= 17:  # the lines kept in steps' rows
                    numbers += " UNION ALL SELECT max(history_seq) FROM steps"
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                    f"coalesce(max(n), 0) + 1, false) FROM ({numbers}) AS numbers (n)".encode()
                )
    return version
