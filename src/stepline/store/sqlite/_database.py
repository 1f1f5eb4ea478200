"""The SQLite file under a store: its connections (one a thread), its WAL checkpointer, how
SQLite's errors are read (``store_error``) and the schema's migration."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from stepline.errors import ConfigError, StoreError, StoreUnavailable
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._checkpoint import CHECKPOINT_WAL_BYTES, Checkpointer
from stepline.store.sqlite.schema import MIGRATIONS, STOP_WORKERS_FIRST

P = ParamSpec("P")
T = TypeVar("T")


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode. SQLite answers SQLITE_BUSY at once, without its busy handler,
    when another connection holds a write lock while the file is still in rollback mode (a
    process creating a new file): retried with a short backoff for up to ``timeout`` seconds,
    as the busy handler would have waited."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


_SQLITE_BUSY = 5
# SQLite primary result codes that mean "not now" (https://sqlite.org/rescode.html); after each
# of them SQLite may roll the transaction back by itself
_TRANSIENT_CODES = {
    5,  # SQLITE_BUSY: locked past the busy timeout
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    10,  # SQLITE_IOERR (and its extended codes)
    13,  # SQLITE_FULL: database or disk is full
    15,  # SQLITE_PROTOCOL
}


def reading(read: Callable[P, T]) -> Callable[P, T]:
    """A read of the store that raises ``StoreError`` (``StoreUnavailable`` when transient),
    never SQLite's own exception."""

    @functools.wraps(read)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return read(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            assert isinstance(store, Database)
            raise store._translated(exc) from exc

    return wrapper


def rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction; SQLite may have rolled it back already (disk full, I/O)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # the original error is what the caller needs to see
            pass


class Database:
    """The SQLite file ``path``: a connection a thread and the WAL's checkpointer."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", busy_timeout: float = 30.0):
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the folder of the database {self.path}: {exc.strerror or exc}"
            ) from None
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._checkpointer = self._new_checkpointer()

    def _new_checkpointer(self) -> Checkpointer:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            return conn

        return Checkpointer(f"{self.path}-wal", connect, CHECKPOINT_WAL_BYTES)

    # -- connections ------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                self._set_up(conn)
            except BaseException:  # (disk full, locked): closed now, made again next time
                conn.close()
                raise
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        use_wal(conn, self._busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        # no checkpoint inside a COMMIT: the checkpointer's thread runs them (_checkpoint)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_WAL_BYTES}")
        # statement and savepoint journals (every verb runs in a savepoint) in memory, not in
        # temporary files: they only serve rollbacks inside a transaction, never crash recovery
        # (the WAL does), so this saves write syscalls and changes no durability
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA foreign_keys = OFF")

    def close(self) -> None:
        self._checkpointer.close()
        self._checkpointer = self._new_checkpointer()  # the store may be used again
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def store_error(self, error: Exception) -> StoreError | None:
        if isinstance(error, StoreError):
            return error
        if not isinstance(error, sqlite3.Error):
            return None
        code = getattr(error, "sqlite_errorcode", None)
        found: StoreError
        if code is not None and code & 0xFF in _TRANSIENT_CODES:
            name = getattr(error, "sqlite_errorname", None)  # e.g. SQLITE_BUSY_SNAPSHOT
            reason = f"{error} ({name})" if name else str(error)
            found = StoreUnavailable(reason, str(self.path))
        else:  # read-only, corrupt, cannot open, not a database, a schema that is not ours
            found = StoreError(str(error), str(self.path))
        found.__cause__ = error
        return found

    def migrate(self, *, force: bool = False) -> None:
        """Bring the schema up to date (the first use of the file). Raises ``ConfigError`` for
        a file that cannot be opened or written, that is not a SQLite database, that holds
        another application's tables, or that a newer Stepline created, and for a migration
        older code reads differently (``STOP_WORKERS_FIRST``) while workers are alive on the
        file, unless ``force``; ``StoreUnavailable`` for a transient error (locked, disk
        full)."""
        try:
            self._migrate(force)
        except sqlite3.Error as exc:
            transient = self.store_error(exc)  # locked, disk full: may work a moment later
            if isinstance(transient, StoreUnavailable):
                raise transient from None
            raise ConfigError(f"cannot use the database {self.path}: {exc}") from None

    def _migrate(self, force: bool) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._check_is_ours(conn)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise ConfigError(
                    f"the database {self.path} was made by a newer Stepline (schema version "
                    f"{current}; this one knows up to {len(MIGRATIONS)}): upgrade Stepline"
                )
            if not force:
                self._check_no_live_workers(conn, current)
            for number, script in enumerate(MIGRATIONS, start=1):
                if number > current:
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_no_live_workers(self, conn: sqlite3.Connection, current: int) -> None:
        """Refuse to apply a migration of ``STOP_WORKERS_FIRST`` while workers (of the version
        before, since this one migrates before it registers) are alive on the file."""
        needed, alive = self._workers_first(conn, current)
        if alive:
            names = ", ".join(alive[:5]) + (", ..." if len(alive) > 5 else "")
            raise ConfigError(
                f"{len(alive)} worker(s) are alive on {self.path} ({names}) and its schema "
                f"needs migration {needed[0]}, which their version reads differently: stop "
                "them before the first start of this version (a worker that stopped without "
                "saying so counts as alive until its registration expires), or apply it with "
                "`stepline db migrate up --force` once they are stopped"
            )

    @staticmethod
    def _workers_first(conn: sqlite3.Connection, current: int) -> tuple[list[int], list[str]]:
        """The migrations of ``STOP_WORKERS_FIRST`` a file at schema ``current`` needs, and
        the workers alive on it if it needs any."""
        needed = sorted(n for n in STOP_WORKERS_FIRST if current < n <= len(MIGRATIONS))
        if not needed or "workers" not in {r[0] for r in conn.execute(q.TABLE_NAMES)}:
            return needed, []
        return needed, [r[0] for r in conn.execute(q.LIVE_WORKERS, (time.time(),))]

    @reading
    def waits_for_workers(self) -> bool:
        """True if ``migrate`` refuses now (without ``force``): the schema needs a migration
        of ``STOP_WORKERS_FIRST`` and workers are alive on the file."""
        current, _ = self.schema_version()
        return bool(self._workers_first(self._conn(), current)[1])

    def _check_is_ours(self, conn: sqlite3.Connection) -> None:
        """Refuse a SQLite file holding tables that are not Stepline's (an empty one is fine)."""
        tables = {r[0] for r in conn.execute(q.TABLE_NAMES)}
        if not tables or ("schema_version" in tables and "runs" in tables):
            return
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(
            f"{self.path} is not a Stepline database: it holds other tables ({shown}); give "
            "Stepline a file of its own (or an empty one)"
        )

    @reading
    def schema_version(self) -> tuple[int, int]:
        """(the file's schema version, the newest this Stepline knows); 0: no schema yet."""
        tables = {r[0] for r in self._conn().execute(q.TABLE_NAMES)}
        if "schema_version" not in tables:
            return 0, len(MIGRATIONS)
        row = self._conn().execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0), len(MIGRATIONS)

    def _translated(self, error: sqlite3.Error) -> StoreError:
        found = self.store_error(error)
        assert found is not None
        return found

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        except BaseException:
            rollback(conn)
            raise
        conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """The statements of a migration script, in order (a trigger's body holds semicolons of
    its own: a piece is joined to the next until it is a complete statement)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending)
    return statements
