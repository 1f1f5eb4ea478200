"""The ``store`` fixture: each contract test runs on the reference memory store and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stepline.store import MemoryStore, SQLiteStore, Store


def open_backend(kind: str, path: Path) -> Store:
    """A migrated, empty store of ``kind`` ("memory" or "sqlite"; SQLite in the file ``path``)."""
    store: Store = MemoryStore() if kind == "memory" else SQLiteStore(path)
    store.migrate()
    return store


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend."""
    opened = open_backend(request.param, tmp_path / "s.db")
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A fresh SQLite store (for backend-specific tests)."""
    opened = SQLiteStore(tmp_path / "s.db")
    opened.migrate()
    yield opened
    opened.close()
