"""SQLite migrations that code of the version before reads differently (``STOP_WORKERS_FIRST``):
applied only while no worker is alive on the file (review F3)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from sqlitetest import file_at_version
from stepline.errors import ConfigError
from stepline.store import SQLiteStore
from stepline.store.records import EventIngest
from stepline.store.sqlite.schema import MIGRATIONS, STOP_WORKERS_FIRST

from .builders import T0, event, ingest, lease_run, start, suspend_on_wait, wait


def schema_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])


def test_migration_20_is_refused_while_a_worker_of_the_version_before_is_alive(
    tmp_path: Path,
) -> None:
    # review F3: after migration 20 a resolved wait's row stays (marked in waits_resolved) until
    # a purge; a worker of schema 19 still running on the file reads it as pending and resolves
    # the wait again with the next matching event (or times it out)
    assert 20 in STOP_WORKERS_FIRST
    path = tmp_path / "s.db"
    file_at_version(path, 19, ("w-old", time.time() + 600), ("w-crashed", T0))
    store = SQLiteStore(path)
    with pytest.raises(ConfigError) as refused:
        store.migrate()
    assert "1 worker(s) are alive" in str(refused.value)
    assert "w-old" in str(refused.value) and "w-crashed" not in str(refused.value)
    assert "--force" in str(refused.value)
    assert schema_version(path) == 19  # nothing applied, the file as the old workers read it
    store.migrate(force=True)
    assert schema_version(path) == len(MIGRATIONS)
    store.close()


def test_migration_20_is_applied_once_the_workers_of_the_version_before_are_gone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    file_at_version(
        path, 19, ("w-crashed", T0)
    )  # stopped without saying so, its registration expired
    store = SQLiteStore(path)
    store.migrate()
    assert schema_version(path) == len(MIGRATIONS)
    start(store, "r1")
    suspend_on_wait(store, lease_run(store, "r1"), wait("r1", "w-r1", None))
    [paid] = ingest(store, EventIngest(event("e1", "payment/received")), now=T0 + 1)
    assert paid.resumed_run_ids == ("r1",)
    store.close()


def test_a_file_already_migrated_opens_with_workers_alive(tmp_path: Path) -> None:
    # the workers of this version, and another process of it starting beside them
    path = tmp_path / "s.db"
    file_at_version(path, len(MIGRATIONS), ("w-new", time.time() + 600))
    store = SQLiteStore(path)
    store.migrate()
    assert schema_version(path) == len(MIGRATIONS)
    store.close()
