"""Storage: the Store interface and its backends (memory, SQLite)."""

from __future__ import annotations

import os
from pathlib import Path

from stepline.errors import ConfigError
from stepline.store.interface import Store, StoreTx
from stepline.store.memory import MemoryStore
from stepline.store.sqlite import SQLiteStore

DEFAULT_DB_PATH = Path(".stepline") / "stepline.db"

__all__ = ["DEFAULT_DB_PATH", "MemoryStore", "SQLiteStore", "Store", "StoreTx", "open_store"]


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names: ``sqlite:///path.db``, a plain file path, or ``memory://``.

    Without a URL: ``STEPLINE_DB``, else the SQLite file ``./.stepline/stepline.db``.
    """
    url = url or os.environ.get("STEPLINE_DB") or str(DEFAULT_DB_PATH)
    if url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///") or DEFAULT_DB_PATH)
    if url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(
            "PostgreSQL is not supported by this version of Stepline yet; use sqlite:///path.db"
        )
    if "://" in url:
        raise ConfigError(f"unknown database URL {url!r}: use sqlite:///path.db or memory://")
    return SQLiteStore(url)
