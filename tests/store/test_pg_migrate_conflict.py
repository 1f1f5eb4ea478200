"""A PostgreSQL migration that loses a deadlock is tried again, not reported as an outage.
Its DDL locks tables in its order while another session plans a statement over them in its own
order (this store's new pool connection preparing its statements, another process opening the
database), and the server ends one of the two: when it ended the migration, ``migrate`` raised
``StoreUnavailable: deadlock detected`` (a gate of the nineteenth stop: the golden database's
migration, in test_golden.py). Rolled back whole, it is simply made again."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import psycopg.errors
import pytest

import pgtest
from stepline.errors import StoreUnavailable
from stepline.store.postgres import _database
from stepline.store.postgres.schema import MIGRATIONS
from stepline.store.postgres.store import PostgresStore


def _fresh_database() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return pgtest.create_database(pgtest.cluster(), f"stepline_migrate_conflict_{worker}")


def _losing(times: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the first ``times`` migration transactions end as a deadlock's victim, after their
    DDL ran (as the server ends one); the calls made, counted."""
    made: list[int] = []
    real = _database._migrate_once

    def once(conn: psycopg.Connection[Any], label: str) -> None:
        made.append(1)
        if len(made) <= times:
            with conn.transaction():
                conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
                raise psycopg.errors.DeadlockDetected("deadlock detected")
        real(conn, label)

    monkeypatch.setattr(_database, "_migrate_once", once)
    return made


def test_a_migration_that_lost_a_deadlock_is_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = _fresh_database()
    made = _losing(2, monkeypatch)
    store = PostgresStore(url)
    try:
        store.migrate()
        assert store.schema_version() == (len(MIGRATIONS), len(MIGRATIONS))
    finally:
        store.close()
    assert len(made) == 3


def test_a_migration_that_keeps_losing_is_an_outage_in_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = _fresh_database()
    made = _losing(_database.MIGRATE_ATTEMPTS, monkeypatch)
    store = PostgresStore(url)
    try:
        with pytest.raises(StoreUnavailable, match="deadlock detected"):
            store.migrate()
        assert store.schema_version() == (0, len(MIGRATIONS))  # nothing of it committed
    finally:
        store.close()
    assert len(made) == _database.MIGRATE_ATTEMPTS
