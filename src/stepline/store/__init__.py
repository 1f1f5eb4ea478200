"""Storage: the Store interface and its backends (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stepline.errors import ConfigError
from stepline.store._copy import Copyable
from stepline.store.interface import Store, StoreTx

if TYPE_CHECKING:
    from stepline.store.memory import MemoryStore
    from stepline.store.sqlite import SQLiteStore
else:
    # a backend is imported when a URL selects it (`stepline runs list --db F` does not load the
    # memory store; tests/acceptance/test_cli_startup.py)

    def __getattr__(name: str) -> Any:
        if name == "MemoryStore":
            from stepline.store.memory import MemoryStore

            return MemoryStore
        if name == "SQLiteStore":
            from stepline.store.sqlite import SQLiteStore

            return SQLiteStore
        raise AttributeError(f"module 'stepline.store' has no attribute {name!r}")


DEFAULT_DB_PATH = Path(".stepline") / "stepline.db"

__all__ = [
    "DEFAULT_DB_PATH",
    "DurableStore",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "StoreTx",
    "open_durable_store",
    "open_store",
]


class DurableStore(Store, Copyable, Protocol):
    """A store kept in a database (SQLite, PostgreSQL): its schema can be inspected, and it can
    be copied to another database (``store/_copy.py``)."""

    def migrate(self, *, force: bool = False) -> None:
        """Create or upgrade the schema (idempotent). A migration that code of the version
        before would read differently is refused (``ConfigError``) while workers are alive on
        the database, unless ``force`` (``stepline db migrate up --force``)."""
        ...

    def schema_version(self) -> tuple[int, int]:
        """(the database's schema version, the newest this Stepline knows); 0: no schema."""
        ...

    def clock_skew(self, now: Callable[[], float] | None = None) -> float:
        """The database server's clock minus this machine's (read by ``now``; None: the system
        clock), in seconds."""
        ...

    def clock_refusal(self, skew: float) -> str | None:
        """Why a process on this machine, whose clock is ``skew`` (``clock_skew``) from the
        database's, is refused when it opens the database (``migrate`` raises ``ConfigError``
        with it); None when it is not."""
        ...


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names: ``sqlite:///path.db``, a plain file path,
    ``postgresql://user@host:port/dbname`` (needs ``pip install 'stepline[postgres]'``), or
    ``memory://``.

    Without a URL: ``STEPLINE_DB``, else the SQLite file ``./.stepline/stepline.db``.
    """
    url = url or os.environ.get("STEPLINE_DB") or str(DEFAULT_DB_PATH)
    if url.startswith("memory:"):
        from stepline.store.memory import MemoryStore

        return MemoryStore()
    return open_durable_store(url)


def open_durable_store(url: str) -> DurableStore:
    """``open_store`` for a database (``memory://`` is refused with ``ConfigError``)."""
    if url.startswith(("postgres://", "postgresql://")):
        try:
            from stepline.store.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"PostgreSQL needs psycopg ({exc}): pip install 'stepline[postgres]'"
            ) from None
        return PostgresStore(url)
    if "://" in url and not url.startswith("sqlite:///"):
        raise ConfigError(
            f"unknown database URL {url!r}: use sqlite:///path.db, postgresql://... or memory://"
        )
    from stepline.store.sqlite import SQLiteStore

    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///") or DEFAULT_DB_PATH)
    return SQLiteStore(url)
