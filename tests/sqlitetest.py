"""New SQLite databases for the tests, each a copy of one this process migrated once: migrating a
new file cost ~14 ms of CPU and 40-65 ms with its fsyncs (a few hundred engine and store tests
each made one), a copy ~3 ms. The copy is the file a migration makes (schema and WAL mode; no
database-specific value is stored at creation); the stores still migrate it (a no-op)."""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from stepline.store.sqlite import SQLiteStore
from stepline.store.sqlite.schema import MIGRATIONS

_made: list[Path] = []


def _template() -> Path:
    if not _made:
        folder = Path(tempfile.mkdtemp(prefix="stepline-sqlite-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "template.db"
        store = SQLiteStore(path)
        store.migrate()
        store.close()
        assert not Path(f"{path}-wal").exists(), "the template's WAL was not folded in at close"
        _made.append(path)
    return _made[0]


def fresh_database(path: str | Path) -> Path:
    """Make ``path`` a new database with Stepline's schema (unless the file exists: a test that
    opens its database again keeps what it wrote); returns it."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), path)
    return path


def file_at_version(path: Path, version: int, *workers: tuple[str, float]) -> None:
    """A file a Stepline of schema ``version`` made, with these (worker id, expires at)
    registered as its running workers are."""
    with closing(sqlite3.connect(path)) as conn:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.executemany(
            "INSERT INTO schema_version (version) VALUES (?)", [(v,) for v in range(1, version + 1)]
        )
        conn.executemany(
            "INSERT INTO workers (worker_id, app_id, function_ids, started_at, seen_at, "
            "expires_at) VALUES (?, 'app', '[]', 0, 0, ?)",
            workers,
        )
        conn.commit()
