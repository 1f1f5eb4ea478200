"""The SQLite Store: one file, WAL, durable commits, safe for several processes.

Durability: ``synchronous=FULL`` by default, so a transaction that returned is on disk even after a
power loss (``synchronous="NORMAL"`` trades the last transactions on power loss for speed; a
process crash loses nothing either way). Writes use ``BEGIN IMMEDIATE`` so writers queue on the
file lock (``busy_timeout``) instead of failing mid-transaction. Each thread gets its own
connection; each write verb runs inside a SAVEPOINT so a refused verb (a lost lease) leaves the
rest of a group-commit transaction intact.

Errors: SQLite's "not now" result codes (``SQLITE_BUSY`` past the busy timeout, ``SQLITE_FULL``,
``SQLITE_IOERR``, ...) are read as ``StoreUnavailable`` by ``store_error()`` (any other
SQLite error as a ``StoreError`` naming the file, never the raw exception). After one of them
SQLite may have rolled the whole transaction back by itself: the transaction is then rolled back
(if it is still open) and the connection stays usable; a verb never runs outside a transaction.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from stepline.store._catalog import TriggerCatalog
from stepline.store._copy import Row, Table
from stepline.store._marked_runs import MarkedRuns
from stepline.store.interface import Replay
from stepline.store.sqlite import _copy
from stepline.store.sqlite._database import reading, rollback
from stepline.store.sqlite._savepoints import Optimistic
from stepline.store.sqlite._waits import WaitSweep
from stepline.store.sqlite.reads import SQLiteReads
from stepline.store.sqlite.tx import _SQLiteTx


class SQLiteStore(SQLiteReads):
    """A Store in one SQLite file (``path``); ``synchronous`` is "FULL" (default) or "NORMAL"."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", busy_timeout: float = 30.0):
        super().__init__(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._group_cursors: dict[tuple[str, str], str] = {}  # where lease_due's visits resume
        self._wait_sweep = WaitSweep()  # where purge_resolved_waits's sweep of waits resumes
        self._catalog = TriggerCatalog()  # the trigger catalog last read (see _catalog)
        self._marks = MarkedRuns()  # the runs pass commits marked RUNNING, by lease (_marked_runs)

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def optimistic_transaction(self) -> _Transaction:
        """``OptimisticStore``: ``transaction()`` without a SAVEPOINT (a verb's, a job's):
        ``Replay`` when anything failed in it (a job or a verb raised, even if caught), its
        whole transaction rolled back; a failed BEGIN or COMMIT raises as in
        ``transaction()``."""
        return _Transaction(self, optimistic=True)

    # -- copying a whole database (store/_copy.py) -------------------------------------------------
    @contextmanager
    def migrated_source(self, *, workers_alive: bool) -> Iterator[SQLiteStore]:
        """The file, migrated; or, with ``workers_alive`` while ``migrate`` refuses because
        workers of the version before are alive on it, a copy of it (SQLite's backup: one
        consistent read) in a folder beside it, migrated there, deleted after the block: the
        file stays at its schema, as its workers read it."""
        if not workers_alive or not self.waits_for_workers():
            self.migrate()
            yield self
            return
        with tempfile.TemporaryDirectory(prefix=".stepline-copy-", dir=self.path.parent) as aside:
            path = Path(aside) / self.path.name
            try:
                with (
                    closing(sqlite3.connect(self.path)) as read,
                    closing(sqlite3.connect(path)) as write,
                ):
                    read.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                    read.backup(write)
            except sqlite3.Error as exc:
                raise self._translated(exc) from exc
            migrated = SQLiteStore(path, synchronous="NORMAL")
            try:
                migrated.migrate(force=True)  # its workers are alive on the file, not here
                yield migrated
            finally:
                migrated.close()

    def location(self) -> str:
        """The file by its device and inode (a link or another spelling of its path is the
        same file); its resolved path while it does not exist."""
        try:
            found = os.stat(self.path)
        except OSError:
            return f"sqlite {self.path.resolve()}"
        return f"sqlite {found.st_dev}:{found.st_ino}"

    @reading
    def table_columns(self) -> dict[str, tuple[str, ...]]:
        return _copy.table_columns(self._conn())

    @contextmanager
    def snapshot(self) -> Iterator[_copy.SQLiteSnapshot]:
        """A consistent read of the whole file on a connection of its own."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM schema_version").fetchone()  # the snapshot starts
            _copy.refuse_owed(conn)
            yield _copy.SQLiteSnapshot(conn)
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc
        finally:
            conn.close()

    @reading
    def load_rows(self, table: Table, rows: Sequence[Row]) -> None:
        _copy.load_rows(self._conn(), table, rows)

    def loaded(self, table: Table) -> None:
        """Nothing to do: SQLite numbers new rows after the largest number present."""

    @reading
    def wipe(self) -> None:
        _copy.wipe(self._conn())


class _Transaction:
    """``SQLiteStore.transaction()``: BEGIN IMMEDIATE, then COMMIT unless the block raised (a
    class rather than a generator context manager: one a step commit). ``optimistic``:
    ``optimistic_transaction()``, whose savepoints are none (``_savepoints.Optimistic``); a
    block that raised an ``Exception``, or in which one was raised inside a savepoint, is
    rolled back and raises ``Replay``."""

    __slots__ = ("_conn", "_optimistic", "_store", "_tx")

    def __init__(self, store: SQLiteStore, optimistic: bool = False) -> None:
        self._store = store
        self._optimistic = optimistic

    def __enter__(self) -> _SQLiteTx:
        store = self._store
        try:
            conn = self._conn = store._conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise store._translated(exc) from exc
        optimistic = Optimistic(conn) if self._optimistic else None
        tx = self._tx = _SQLiteTx(
            conn,
            store._group_cursors,
            store._catalog,
            optimistic,
            store._marks,
            store._wait_sweep,
        )
        return tx

    def __exit__(self, kind: type[BaseException] | None, error: object, *_: object) -> None:
        conn, store = self._conn, self._store
        optimistic = self._tx._optimistic
        if optimistic is not None and (
            isinstance(error, Exception) or (kind is None and optimistic.failed)
        ):
            rollback(conn)
            self._tx._forget_reads()  # what it read may have been undone
            raise Replay("the optimistic transaction failed: made again carefully") from (
                error if isinstance(error, BaseException) else None
            )
        if kind is None:
            try:
                conn.execute("COMMIT")
            except BaseException as exc:  # never leave the connection in the transaction
                rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise store._translated(exc) from exc
                raise
            if self._tx.marked:
                store._marks.add(self._tx.marked)
            store._checkpointer.committed(conn)
            return
        rollback(conn)
        if isinstance(error, sqlite3.Error):
            raise store._translated(error) from error
