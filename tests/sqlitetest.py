"""New SQLite databases for the tests, each a copy of one this process migrated once: migrating a
new file cost ~14 ms of CPU and 40-65 ms with its fsyncs (a few hundred engine and store tests
each made one), a copy ~3 ms. The copy is the file a migration makes (schema and WAL mode; no
database-specific value is stored at creation); the stores still migrate it (a no-op)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from stepline.store.sqlite import SQLiteStore

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
