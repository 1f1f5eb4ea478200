"""The SQLite backend."""

from stepline.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
