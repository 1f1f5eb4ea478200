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

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from stepline.errors import ConfigError, LeaseLostError, StoreError, StoreUnavailable
from stepline.serde import dumps, dumps_exact, loads
from stepline.store import _rows as shapes
from stepline.store._catalog import TriggerCatalog, app_records
from stepline.store._clauses import match_sql
from stepline.store._copy import Row, Table
from stepline.store._index_paths import IndexPaths
from stepline.store._ingest_rules import admit_taken, cancel_by, ingest
from stepline.store._pass_rules import PassTx, commit_pass
from stepline.store._primitives import EndedRun, ResumedWait
from stepline.store.records import (
    AppRecord,
    AppRemoval,
    EventFilter,
    EventIngest,
    EventRecord,
    EventRunRecord,
    FunctionSet,
    HistoryRecord,
    InboxItem,
    IngestResult,
    PassCommit,
    QueueState,
    RunClause,
    RunEnd,
    RunFilter,
    RunRecord,
    RunState,
    SearchWindow,
    SkipRecord,
    StepRecord,
    StoredEvent,
    StoreStats,
    TriggerRow,
    WaitMatcher,
    WaitRecord,
    Wake,
    WorkerRecord,
)
from stepline.store.sqlite import _copy, _search
from stepline.store.sqlite import queries as q
from stepline.store.sqlite._arms import app_ids, chunks, unpaused
from stepline.store.sqlite._checkpoint import CHECKPOINT_WAL_BYTES, Checkpointer
from stepline.store.sqlite.control_verbs import SQLiteControlVerbs
from stepline.store.sqlite.schema import MIGRATIONS

P = ParamSpec("P")
T = TypeVar("T")
DEDUP_WINDOW = 24 * 3600.0
_NO_ATTEMPT = (None, None, None)


def _use_wal(conn: sqlite3.Connection, timeout: float) -> None:
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


def _reading(read: Callable[P, T]) -> Callable[P, T]:
    """A read of the store that raises ``StoreError`` (``StoreUnavailable`` when transient),
    never SQLite's own exception."""

    @functools.wraps(read)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return read(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            assert isinstance(store, SQLiteStore)
            raise store._translated(exc) from exc

    return wrapper


def _json_path(segments: list[str]) -> str:
    """A JSON path of object keys, each quoted."""
    return "$" + "".join(f'."{segment}"' for segment in segments)


def _json_list(values: Sequence[str]) -> str:
    return dumps_exact(list(values)).decode()


def _event_id_data(event_id: str) -> str:
    if event_id.isascii() and event_id.isalnum():  # Stepline's ids: nothing to escape
        return f'{{"event_id":"{event_id}"}}'
    return dumps_exact({"event_id": event_id}).decode()


class SQLiteStore:
    """A Store in one SQLite file (``path``); ``synchronous`` is "FULL" (default) or "NORMAL"."""

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
        self._group_cursors: dict[tuple[str, str], str] = {}  # where lease_due's visits resume
        self._catalog = TriggerCatalog()  # the trigger catalog last read (see _catalog)
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
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            _use_wal(conn, self._busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # no checkpoint inside a COMMIT: the checkpointer's thread runs them (_checkpoint)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_WAL_BYTES}")
            # statement and savepoint journals (every verb runs in a savepoint) in memory, not
            # in temporary files: they only serve rollbacks inside a transaction, never crash
            # recovery (the WAL does), so this saves write syscalls and changes no durability
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA foreign_keys = OFF")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

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
            reason = f"{error} ({name}, {self.path})" if name else f"{error} ({self.path})"
            found = StoreUnavailable(reason, str(self.path))
        else:  # read-only, corrupt, cannot open, not a database, a schema that is not ours
            found = StoreError(str(error), str(self.path))
        found.__cause__ = error
        return found

    def migrate(self) -> None:
        """Bring the schema up to date (the first use of the file). Raises ``ConfigError`` for
        a file that cannot be opened or written, that is not a SQLite database, that holds
        another application's tables, or that a newer Stepline created; ``StoreUnavailable``
        for a transient error (locked, disk full)."""
        try:
            self._migrate()
        except sqlite3.Error as exc:
            transient = self.store_error(exc)  # locked, disk full: may work a moment later
            if isinstance(transient, StoreUnavailable):
                raise transient from None
            raise ConfigError(f"cannot use the database {self.path}: {exc}") from None

    def _migrate(self) -> None:
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
            for number, script in enumerate(MIGRATIONS, start=1):
                if number > current:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

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

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteTx]:
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc
        try:
            yield _SQLiteTx(conn, self._group_cursors, self._catalog)
            conn.execute("COMMIT")
        except BaseException as exc:  # a COMMIT that failed too: never leave the connection in it
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._translated(exc) from exc
            raise
        self._checkpointer.committed(conn)

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
            _rollback(conn)
            raise
        conn.execute("COMMIT")

    # -- reads ------------------------------------------------------------------------------------
    @_reading
    def load_run(self, run_id: str) -> RunState | None:
        with self._read() as conn:
            row = conn.execute(q.SELECT_RUN, (run_id,)).fetchone()
            if row is None:
                return None
            run = shapes.run_record(row)
            events = _select_events(conn, run.event_ids)
            steps = {s.hash: s for s in _select_steps(conn, run_id)}
            waits = [shapes.wait_record(r) for r in conn.execute(q.WAITS_OF_RUN, (run_id,))]
            return RunState(run=run, events=events, steps=steps, waits=waits)

    @_reading
    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._conn().execute(q.SELECT_RUN, (run_id,)).fetchone()
        return None if row is None else shapes.run_record(row)

    @_reading
    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        where, params = shapes.run_filter(query, "?", q.WAITING_FOR_WORKER)
        found = self._conn().execute(q.LIST_RUNS.format(where=where), [*params, query.limit])
        return [shapes.run_record(r) for r in found]

    @_reading
    def search_window(
        self, query: RunFilter, window: int, clauses: tuple[RunClause, ...] = ()
    ) -> SearchWindow:
        where, params = shapes.run_filter(query, "?", q.WAITING_FOR_WORKER)
        match, matched = match_sql(clauses, _search.CLAUSES)
        added, joins = _search.window_joins(clauses)
        if joins:
            statement = q.SEARCH_WINDOW_JOINED.format(
                where=where, match=match, added=added, join=joins
            )
            rows = self._conn().execute(statement, [*matched, *params, window + 1])
        else:
            statement = q.SEARCH_WINDOW.format(where=where, match=match)
            rows = self._conn().execute(statement, [*matched, *params, window + 1])
        return shapes.kept_window(rows, window)

    @_reading
    def count_runs(self, query: RunFilter) -> int:
        where, params = shapes.run_filter(query, "?", q.WAITING_FOR_WORKER)
        statement = q.COUNT_RUNS.format(where=where)
        return int(self._conn().execute(statement, [*params, query.limit]).fetchone()[0])

    @_reading
    def get_steps(self, run_id: str) -> list[StepRecord]:
        return _select_steps(self._conn(), run_id)

    @_reading
    def steps_of(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        found: dict[str, list[StepRecord]] = {}
        for row in self._conn().execute(q.STEPS_OF, (dumps(list(run_ids)),)):
            found.setdefault(row[0], []).append(shapes.step_record(row))
        return found

    @_reading
    def list_events(self, query: EventFilter) -> list[StoredEvent]:
        where, params = shapes.event_filter(query, "?")
        found = self._conn().execute(q.LIST_EVENTS.format(where=where), [*params, query.limit])
        return [shapes.stored_event(r) for r in found]

    @_reading
    def event_runs(self, event_ids: Sequence[str], limit: int = 100) -> list[EventRunRecord]:
        found = self._conn().execute(q.EVENT_RUNS, (dumps(list(event_ids)), limit))
        return [EventRunRecord(r[0], r[1], shapes.run_record(r[2:])) for r in found]

    @_reading
    def stats(self, now: float) -> StoreStats:
        conn = self._conn()
        by_status = {r[0]: r[1] for r in conn.execute(q.RUNS_BY_STATUS)}
        depth = conn.execute(q.QUEUE_DEPTH).fetchone()[0]
        due, oldest = conn.execute(q.QUEUE_DUE, (now,)).fetchone()
        return StoreStats(by_status, depth, due, oldest)

    @_reading
    def get_history(self, run_id: str) -> list[HistoryRecord]:
        return [shapes.history_record(r) for r in self._conn().execute(q.SELECT_HISTORY, (run_id,))]

    @_reading
    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        return _select_events(self._conn(), list(internal_ids))

    @_reading
    def next_due_at(self, functions: FunctionSet | None = None) -> float | None:
        if functions is None:
            row = self._conn().execute(q.NEXT_DUE).fetchone()
            return None if row is None else row[0]
        with self._read() as conn:
            times = [conn.execute(q.NEXT_DEFERRAL).fetchone()[0]]
            ids = dumps(list(functions.function_ids)).decode()
            times.append(conn.execute(q.NEXT_CRON_OF, (functions.app_id, ids)).fetchone()[0])
            times.append(conn.execute(q.NEXT_INBOX_OF, (functions.app_id, ids)).fetchone()[0])
            deadline = conn.execute(q.NEXT_START_DEADLINE_OF, (functions.app_id, ids))
            times.append(deadline.fetchone()[0])
            served = unpaused(conn, functions)
            for app_id in app_ids(conn, functions):
                for chunk in chunks(served):
                    arms = " UNION ALL ".join(
                        q.NEXT_DUE_ARM.format(n=i + 2) for i in range(len(chunk))
                    )
                    times += [r[0] for r in conn.execute(arms, (app_id, *chunk))]
        return min((t for t in times if t is not None), default=None)

    @_reading
    def next_start_deadline(self, functions: FunctionSet) -> float | None:
        ids = dumps(list(functions.function_ids)).decode()
        row = self._conn().execute(q.NEXT_START_DEADLINE_OF, (functions.app_id, ids)).fetchone()
        return None if row is None else row[0]

    @_reading
    def apps(self, now: float) -> list[AppRecord]:
        conn = self._conn()
        return app_records(
            conn.execute(q.CATALOG_ROWS).fetchall(),
            conn.execute(q.APP_WORKERS, (now,)).fetchall(),
            conn.execute(q.APP_INBOX).fetchall(),
        )

    @_reading
    def live_workers(self, now: float) -> list[WorkerRecord]:
        return [
            WorkerRecord(r[0], r[1], tuple(loads(r[2])), r[3], r[4], r[5])
            for r in self._conn().execute(q.LIVE_WORKERS, (now,))
        ]

    @_reading
    def list_skips(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        where, params = ("WHERE function_id = ?", [function_id]) if function_id else ("", [])
        rows = self._conn().execute(q.LIST_SKIPS.format(where=where), [*params, limit])
        return [SkipRecord(*r) for r in rows]

    @_reading
    def sdk_apps(self, app_id: str) -> list[tuple[str, bytes]]:
        rows = self._conn().execute(q.SDK_APPS, (app_id,))
        return [(str(name), bytes(body)) for name, body in rows]

    @_reading
    def paused_functions(self, app_id: str | None = None) -> set[str]:
        if app_id is None:
            return {r[0] for r in self._conn().execute(q.PAUSED)}
        return {r[0] for r in self._conn().execute(q.PAUSED_IN, (app_id,))}

    @_reading
    def queue_states(self, run_ids: Sequence[str], now: float) -> list[QueueState]:
        ids = dumps(list(run_ids)).decode()
        with self._read() as conn:
            return shapes.queue_states(
                run_ids,
                conn.execute(q.QUEUE_STATES, (ids, now)).fetchall(),
                conn.execute(q.WAITS_OF_RUNS, (ids,)).fetchall(),
                lambda: [(r[1], r[3]) for r in conn.execute(q.LIVE_LEASES, (now,))],
            )

    @_reading
    def schema_version(self) -> tuple[int, int]:
        """(the file's schema version, the newest this Stepline knows); 0: no schema yet."""
        tables = {r[0] for r in self._conn().execute(q.TABLE_NAMES)}
        if "schema_version" not in tables:
            return 0, len(MIGRATIONS)
        row = self._conn().execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0), len(MIGRATIONS)

    def clock_skew(self) -> float:
        """The database's clock minus this machine's: 0, a SQLite file has no clock of its own."""
        return 0.0

    # -- copying a whole database (store/_copy.py) -------------------------------------------------
    @_reading
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
            yield _copy.SQLiteSnapshot(conn)
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc
        finally:
            conn.close()

    @_reading
    def load_rows(self, table: Table, rows: Sequence[Row]) -> None:
        _copy.load_rows(self._conn(), table, rows)

    def loaded(self, table: Table) -> None:
        """Nothing to do: SQLite numbers new rows after the largest number present."""

    @_reading
    def wipe(self) -> None:
        _copy.wipe(self._conn())


class _SQLiteTx(SQLiteControlVerbs):
    """Write verbs inside one BEGIN IMMEDIATE transaction; each verb in its own SAVEPOINT."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        group_cursors: dict[tuple[str, str], str],
        catalog: TriggerCatalog | None = None,
    ) -> None:
        self._c = conn
        self._group_cursors = group_cursors
        self._triggers = (catalog or TriggerCatalog()).view(
            lambda: int(conn.execute(q.CATALOG_VERSION).fetchall()[0][0]),
            lambda: [TriggerRow(*r) for r in conn.execute(q.CATALOG_ROWS)],
        )
        self._index = IndexPaths(lambda query, p: conn.execute(query, p).fetchall(), conn.execute)
        # the trigger event ids (JSON) of the runs this transaction cancelled (see run_events)
        self._event_ids: dict[str, str] = {}
        # runs this transaction cancelled while QUEUED: never leased, so no pass ever gave them
        # a wait or a RUNNING step mark (only a commit or a lease does), see drop_run_work
        self._never_leased: set[str] = set()
        # inside ``ingest``: its writes made together (see ``ingest``)
        self._deferred: _Deferred | None = None
        # the events of the runs this transaction cancelled, read together (see run_events)
        self._cancelled_events: dict[str, list[EventRecord]] = {}

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        c = self._c
        if not c.in_transaction:  # SQLite rolled it back (disk full, I/O error): a SAVEPOINT
            # here would start a transaction of its own and commit this verb alone
            raise StoreUnavailable("the transaction was rolled back by SQLite")
        c.execute("SAVEPOINT verb")
        try:
            yield c
        except BaseException:
            if c.in_transaction:  # else SQLite already rolled the whole transaction back
                c.execute("ROLLBACK TO verb")
                c.execute("RELEASE verb")
            raise
        c.execute("RELEASE verb")

    # -- events -----------------------------------------------------------------------------------
    def stored_event_ids(self, internal_ids: Sequence[str]) -> set[str]:
        rows = self._c.execute(q.STORED_EVENT_IDS, (dumps(list(internal_ids)),))
        return {r[0] for r in rows}

    def run_events(self, run_id: str) -> list[EventRecord]:
        if run_id in self._event_ids:  # cancelled in this transaction: its ids were read then
            if run_id not in self._cancelled_events:
                self._read_cancelled_events()
            return self._cancelled_events[run_id]
        row = self._c.execute(q.RUN_EVENT_IDS, (run_id,)).fetchone()
        return [] if row is None else _select_events(self._c, loads(row[0]))

    def _read_cancelled_events(self) -> None:
        """The events of every run cancelled in this transaction and not read yet, with one
        statement (each cancellation is announced with its run's events)."""
        unread = {
            run_id: loads(ids)
            for run_id, ids in self._event_ids.items()
            if run_id not in self._cancelled_events
        }
        wanted = list(dict.fromkeys(i for ids in unread.values() for i in ids))
        rows = self._c.execute(q.EVENTS_AMONG, (_json_list(wanted),))
        found = {r[0]: shapes.event_record(r) for r in rows}
        for run_id, ids in unread.items():
            self._cancelled_events[run_id] = [found[i] for i in ids if i in found]

    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        with self._savepoint():
            try:  # the writes of many events made together (``_Deferred``), in a savepoint
                self._deferred = _Deferred()
                with self._savepoint():
                    results = ingest(self, items, now, wait_matches)
                    self._write_deferred()
                    return results
            except _ClaimLost:  # cannot happen (see delete_wait); if it did: each one decides
                pass
            finally:
                self._deferred = None
            return ingest(self, items, now, wait_matches)

    def _write_deferred(self) -> None:
        deferred, c = self._deferred, self._c
        if deferred is None:
            return
        self._delete_resolved(deferred)
        if deferred.cancels:  # before the queue items go: the lease token is read from them
            c.executemany(q.CANCEL_RUN, deferred.cancels)
            deferred.cancels.clear()
        if deferred.runs:
            c.executemany(q.DELETE_QUEUE, deferred.runs)
            c.executemany(q.DELETE_MATCHERS_OF_RUN, deferred.runs)
            deferred.runs.clear()
        if deferred.leased:
            c.executemany(q.DELETE_WAITS_OF_RUN, deferred.leased)
            c.executemany(q.DELETE_EXECUTING_STEPS, deferred.leased)
            deferred.leased.clear()
        if deferred.history:
            c.executemany(q.INSERT_HISTORY, deferred.history)
            deferred.history.clear()

    def _delete_resolved(self, deferred: _Deferred) -> None:
        if deferred.waits:
            if self._c.executemany(q.DELETE_WAIT, deferred.waits).rowcount != len(deferred.waits):
                raise _ClaimLost
            deferred.waits.clear()

    # -- the trigger catalog and the inbox (one writer at a time: exact) --------------------------
    def sync_triggers(
        self,
        app_id: str,
        rows: Sequence[TriggerRow],
        now: float,
        served: FunctionSet | None = None,
    ) -> None:
        with self._savepoint() as c:
            self._triggers.replace(
                app_id, rows, now, served, q, c.execute, c.execute, c.executemany
            )

    def remove_app(self, app_id: str, now: float, force: bool) -> AppRemoval:
        with self._savepoint() as c:  # one writer at a time: exact
            [live] = c.execute(q.LIVE_WORKERS_OF_APP, (app_id, now)).fetchone()
            if live and not force:
                return AppRemoval(app_id, live, True, 0, 0)
            # the rows of its catalog's functions are skipped (as a registration removing them)
            triggers, skipped = self._triggers.replace(
                app_id, (), now, None, q, c.execute, c.execute, c.executemany
            )
            dropped = skipped + c.execute(q.DROP_INBOX_OF_APP, (app_id,)).rowcount
            sdk = c.execute(q.DROP_SDK_APPS_OF_APP, (app_id,)).rowcount
        return AppRemoval(app_id, live, False, triggers, dropped, sdk)

    def listeners(self, event_name: str) -> Sequence[tuple[str, str]]:
        return self._triggers.listeners(event_name)

    def deliver(self, rows: Sequence[tuple[str, str, str]], now: float) -> None:
        self._c.executemany(q.DELIVER, [(*row, now) for row in rows])

    def take_inbox(self, functions: FunctionSet, limit: int) -> Callable[[], list[InboxItem]]:
        c = self._c  # one statement writes: atomic without a savepoint (a lease job's cost)
        wanted = dumps(list(functions.function_ids))
        rows = sorted(c.execute(q.TAKE_INBOX, (functions.app_id, wanted, limit)).fetchall())
        events = {e.internal_id: e for e in _select_events(c, [r[2] for r in rows])}
        taken = [
            InboxItem(seq, function_id, events.get(event_id), received_at)
            for seq, function_id, event_id, received_at in rows
        ]
        return lambda: taken

    def events_received(
        self, names: Sequence[str], after: tuple[float, str], until: float
    ) -> list[tuple[float, EventRecord]]:
        found: list[tuple[float, EventRecord]] = []
        for name in dict.fromkeys(names):
            params = (name, after[0], until, after[0], after[1])
            rows = self._c.execute(q.EVENTS_RECEIVED, params).fetchall()
            found += [(row[0], shapes.event_record(row[1:])) for row in rows]
        return sorted(found, key=_received_order)

    def late_cancels(self, now: float, wait_matches: WaitMatcher) -> list[IngestResult]:
        return []  # one writer at a time: a take and an ingestion never overlap

    def admit_taken(self, items: Sequence[EventIngest], now: float) -> list[IngestResult]:
        with self._savepoint():
            return admit_taken(self, items, now)

    # -- EventPrimitives (see _primitives; one writer at a time: each is exact) ------------------
    def insert_events(self, events: Sequence[EventRecord], now: float) -> list[bool]:
        c = self._c
        new: list[bool] = []
        rows: list[tuple[Any, ...]] = []
        for event in events:
            fresh = True
            if event.id is not None:  # in order: an earlier event of the list counts
                row = c.execute(q.SEEN_SENDER_ID, (event.id,)).fetchone()
                fresh = row is None or row[0] <= now - DEDUP_WINDOW
                if fresh:
                    c.execute(q.REMEMBER_SENDER_ID, (event.id, now))
            new.append(fresh)
            user = dumps_exact(event.user) if event.user else b"{}"
            data = event.encoded_data()
            duplicate = int(not fresh)
            rows.append(
                (event.internal_id, event.name, data, user, event.id, event.ts, now, duplicate)
            )
        c.executemany(q.INSERT_EVENT, rows)  # one statement: the B-trees' pages stay hot
        return new

    def wait_paths(self, event_name: str) -> Sequence[str]:
        return self._index.indexed_paths(q.WAIT_PATHS, event_name)

    def unindexed_waits(self, event_name: str) -> list[WaitRecord]:
        return [WaitRecord(*r) for r in self._index.unindexed_rows(q.WAITS_UNINDEXED, event_name)]

    def indexed_waits(self, event_name: str, path: str, values: Sequence[str]) -> list[WaitRecord]:
        if len(values) == 1:
            rows = self._c.execute(q.WAITS_INDEXED, (event_name, path, values[0]))
        else:
            rows = self._c.execute(q.WAITS_INDEXED_AMONG, (event_name, path, _json_list(values)))
        return [WaitRecord(*r) for r in rows]

    def matcher_paths(self, event_name: str) -> Sequence[str]:
        return self._index.indexed_paths(q.MATCHER_PATHS, event_name)

    def unindexed_matchers(self, event_name: str, now: float) -> list[WaitRecord]:
        rows = self._index.unindexed_rows(q.MATCHERS_UNINDEXED, event_name, now)
        return self._read_runs_of([WaitRecord(*r) for r in rows])

    def indexed_matchers(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[WaitRecord]:
        if len(values) == 1:
            params: tuple[Any, ...] = (event_name, path, values[0], now)
            rows = self._c.execute(q.MATCHERS_INDEXED, params)
        else:
            params = (event_name, path, _json_list(values), now)
            rows = self._c.execute(q.MATCHERS_INDEXED_AMONG, params)
        return self._read_runs_of([WaitRecord(*r) for r in rows])

    def _read_runs_of(self, matchers: list[WaitRecord]) -> list[WaitRecord]:
        """Inside ``ingest``: read the runs of these cancel-matcher candidates that were not
        read yet, with one statement, for ``mark_cancelled`` (what it reads of a run, or that
        the run has ended). Exact: only this transaction writes, and it records its own
        cancellations there."""
        deferred = self._deferred
        if deferred is None or not matchers:
            return matchers
        unread = [m.run_id for m in matchers if m.run_id not in deferred.unfinished]
        if unread:
            rows = self._c.execute(q.UNFINISHED_RUNS_AMONG, (_json_list(unread),))
            found = {r[0]: tuple(r[1:]) for r in rows}
            for run_id in unread:
                deferred.unfinished[run_id] = found.get(run_id)
        return matchers

    def delete_wait(self, run_id: str, wait_id: str) -> bool:
        if self._deferred is None:
            return bool(self._c.execute(q.DELETE_WAIT, (run_id, wait_id)).rowcount == 1)
        # Inside ``ingest``: the candidate was read in this transaction, the one writer's, and
        # the ingest order asks for none twice nor for a wait of a run it cancelled since; so
        # the wait is there, and its delete waits for ``resume_waits`` (one statement for the
        # batch), which checks that every one of them deleted a row.
        self._deferred.waits.append((run_id, wait_id))
        return True

    def resume_waits(self, resumed: Sequence[ResumedWait], now: float) -> None:
        c = self._c
        if self._deferred is not None:
            self._delete_resolved(self._deferred)
        c.executemany(
            q.COMPLETE_STEP, [(r.event_json, now, r.run_id, r.step_hash) for r in resumed]
        )
        c.executemany(q.WAKE, [(now, r.run_id) for r in resumed])
        if all(r.step_id is not None for r in resumed):
            rows = [(r.run_id, now, r.step_id, _event_id_data(r.event_id)) for r in resumed]
            c.executemany(q.INSERT_WAIT_MATCHED, rows)
        else:  # a wait stored without its step's id (schema 18): the step is read
            reading = [
                (r.run_id, now, r.step_id, r.run_id, r.step_hash, _event_id_data(r.event_id))
                for r in resumed
            ]
            c.executemany(q.INSERT_WAIT_MATCHED_READING_STEP, reading)

    # -- RunPrimitives ----------------------------------------------------------------------------
    def mark_cancelled(self, run_id: str, now: float, error: dict[str, Any]) -> EndedRun | None:
        c, deferred = self._c, self._deferred
        # a SELECT then a plain UPDATE (the transaction holds the write lock): cheaper than
        # UPDATE ... RETURNING, which SQLite runs through a temporary table; inside ``ingest``
        # the run was usually read with the other candidates' (``_read_runs_of``) and the
        # UPDATE is made with the others' when the verb ends (until then ``active_singleton_runs``
        # and ``settle_pending_step`` see the run as ended through ``deferred.unfinished``)
        if deferred is not None and run_id in deferred.unfinished:
            row = deferred.unfinished[run_id]
        else:
            row = c.execute(q.UNFINISHED_RUN_FUNCTION, (run_id,)).fetchone()
        if row is None:
            return None
        params = (now, shapes.json_or_none(error), run_id)
        if deferred is None:
            c.execute(q.CANCEL_RUN, params)
        else:
            deferred.cancels.append(params)
            deferred.unfinished[run_id] = None  # ended
        self._event_ids[run_id] = row[3]  # a run's events never change: run_events reads them
        if row[4] == "QUEUED":
            self._never_leased.add(run_id)
        return EndedRun(str(row[0]), row[1], row[2])

    def drop_run_work(self, run_id: str) -> None:
        deferred = self._deferred
        if deferred is not None:  # inside ``ingest``: nothing it reads later reads them (the
            # ingest order skips the runs it cancelled), written at its end with one statement
            deferred.runs.append((run_id,))
            if run_id not in self._never_leased:
                deferred.leased.append((run_id,))
            return
        c = self._c
        c.execute(q.DELETE_QUEUE, (run_id,))
        c.execute(q.DELETE_MATCHERS_OF_RUN, (run_id,))
        if run_id not in self._never_leased:  # else it has neither
            c.execute(q.DELETE_WAITS_OF_RUN, (run_id,))
            c.execute(q.DELETE_EXECUTING_STEPS, (run_id,))

    def append_history(self, records: Sequence[HistoryRecord], worker_id: str | None) -> None:
        if self._deferred is not None:  # inside ``ingest``: a cancelled run's, written at its end
            self._deferred.history += [shapes.history_params(h, worker_id) for h in records]
            return
        if len(records) == 1:
            self._c.execute(q.INSERT_HISTORY, shapes.history_params(records[0], worker_id))
        elif records:
            params = [shapes.history_params(h, worker_id) for h in records]
            self._c.executemany(q.INSERT_HISTORY, params)

    def settle_pending_step(self, wake: Wake, now: float) -> bool:
        if self._ended_here(wake.run_id):
            return False
        settle = (
            wake.status,
            wake.output_json,
            shapes.json_or_none(wake.error),
            now,
            wake.run_id,
            wake.step_hash,
        )
        return bool(self._c.execute(q.SETTLE_PENDING_STEP, settle).rowcount == 1)

    def wake_run(self, run_id: str, now: float) -> None:
        self._c.execute(q.WAKE, (now, run_id))

    def _ended_here(self, run_id: str) -> bool:
        """Whether ``ingest`` cancelled the run and its UPDATE is still to be made."""
        deferred = self._deferred
        return (
            deferred is not None
            and run_id in deferred.unfinished
            and (deferred.unfinished[run_id] is None)
        )

    # -- passes -----------------------------------------------------------------------------------
    def commit_pass(
        self, commit: PassCommit, now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult] | None:
        with self._savepoint():
            return commit_pass(self, commit, now, wait_matches)

    def _check_lease(self, run_id: str, token: str) -> str:
        """The worker holding the run's lease, if ``token`` is its lease."""
        worker = self.hold_lease(run_id, token)
        if worker is None:
            raise LeaseLostError(f"run {run_id}: lease lost")
        return worker

    # -- PassPrimitives ---------------------------------------------------------------------------
    def hold_lease(self, run_id: str, token: str) -> str | None:
        row = self._c.execute(q.LEASE_TOKEN, (run_id,)).fetchone()
        return None if row is None or row[0] != token else str(row[1])

    def cancelled_lease(self, run_id: str) -> tuple[str, str | None] | None:
        row = self._c.execute(q.CANCELLED_LEASE, (run_id,)).fetchone()
        return None if row is None or row[0] is None else (str(row[0]), row[1])

    def put_steps(self, steps: Sequence[StepRecord]) -> None:
        self._c.executemany(q.UPSERT_STEP, [shapes.step_params(s) for s in steps])

    def put_steps_if_unsettled(self, steps: Sequence[StepRecord]) -> None:
        self._c.executemany(q.INSERT_STEP_IF_UNSETTLED, [shapes.step_params(s) for s in steps])

    def insert_waits(self, waits: Sequence[WaitRecord]) -> None:
        for wait in waits:
            self._c.execute(q.INSERT_WAIT, (*shapes.wait_params(wait), wait.step_id))
            if wait.index_path is None:
                self._index.added_unindexed(q.WAITS_UNINDEXED, wait.event_name)
            else:
                self._index.add_indexed_path(
                    q.INSERT_WAIT_PATH, q.WAIT_PATHS, wait.event_name, wait.index_path
                )

    def mark_running(self, run_id: str, started_at: float) -> None:
        self._c.execute(q.MARK_RUNNING, (started_at, run_id))

    def end_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        self._c.execute(
            q.END_RUN_TERMINAL,
            (
                end.status,
                end.output_json,
                shapes.json_or_none(end.error),
                now,
                end.attempt,
                started_at,
                run_id,
            ),
        )

    def suspend_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        c = self._c
        c.execute(q.END_RUN_SUSPENDED, (end.status, end.attempt, started_at, run_id))
        c.execute(q.RESCHEDULE, (now, end.due_at, run_id))

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        lost: list[str] = []
        with self._savepoint() as c:
            for run_id in run_ids:
                if c.execute(q.HEARTBEAT, (now + ttl, run_id, owner)).rowcount != 1:
                    lost.append(run_id)
        return lost

    def release_owner(self, owner: str, now: float) -> int:
        with self._savepoint() as c:
            return c.execute(q.RELEASE_OWNER, (now, now, owner)).rowcount

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        with self._savepoint() as c:
            worker = self._check_lease(run_id, lease_token)
            due = c.execute(q.EXPIRED_WAITS_OF_RUN, (run_id, now))
            expired = [shapes.wait_record(r) for r in due]
            for wait in expired:
                c.execute(q.DELETE_WAIT, (run_id, wait.wait_id))
                c.execute(q.COMPLETE_STEP, (b"null", now, run_id, wait.step_hash))
                step_id = wait.step_id
                if step_id is None:  # stored without it (see schema 18)
                    step_row = c.execute(q.SELECT_STEP_ID, (run_id, wait.step_hash)).fetchone()
                    step_id = step_row[0] if step_row else None
                row = (run_id, now, "WAIT_TIMED_OUT", step_id, *_NO_ATTEMPT, worker)
                c.execute(q.INSERT_HISTORY, row)
            return [w.step_hash for w in expired]

    def overdue_starts(
        self, now: float, functions: FunctionSet, limit: int
    ) -> list[tuple[str, str, float]]:
        ids = dumps(list(functions.function_ids)).decode()
        rows = self._c.execute(q.OVERDUE_STARTS, (functions.app_id, ids, now, limit))
        return [(r[0], r[1], r[2]) for r in rows]

    def cancel_run(
        self, run_id: str, now: float, reason: str, event_id: str | None = None
    ) -> str | None:
        with self._savepoint():
            return cancel_by(self, run_id, now, reason, event_id)


@dataclass(slots=True)
class _Deferred:
    """The writes an ingest verb makes for many events, each kind with one statement when the
    verb ends (the waits it resolved: before their steps complete, ``resume_waits``): the runs
    it cancelled (``cancels``, their rows read together in ``unfinished``), their queue items
    and cancel matchers (``runs``), the waits and RUNNING step marks of those that were leased
    (``leased``), their RUN_CANCELLED rows (``history``)."""

    waits: list[tuple[str, str]] = field(default_factory=list)  # (run id, wait id)
    cancels: list[tuple[Any, ...]] = field(default_factory=list)  # CANCEL_RUN's parameters
    # the runs read for mark_cancelled (UNFINISHED_RUN_FUNCTION's row; None: ended or missing)
    unfinished: dict[str, tuple[Any, ...] | None] = field(default_factory=dict)
    runs: list[tuple[str]] = field(default_factory=list)
    leased: list[tuple[str]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)


class _ClaimLost(Exception):
    """A wait ``delete_wait`` resolved inside ``ingest`` was gone when deleted."""


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction; SQLite may have rolled it back already (disk full, I/O)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # the original error is what the caller needs to see
            pass


# -- row mapping ----------------------------------------------------------------------------------
def _select_steps(conn: sqlite3.Connection, run_id: str) -> list[StepRecord]:
    return [shapes.step_record(r) for r in conn.execute(q.SELECT_STEPS, (run_id,))]


def _received_order(row: tuple[float, EventRecord]) -> tuple[float, str]:
    return row[0], row[1].internal_id


def _select_events(conn: sqlite3.Connection, ids: list[str]) -> list[EventRecord]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    statement = f"SELECT {q.EVENT_COLUMNS} FROM events WHERE internal_id IN ({marks})"
    found = conn.execute(statement, ids)
    by_id = {r[0]: shapes.event_record(r) for r in found}
    return [by_id[i] for i in ids if i in by_id]


if TYPE_CHECKING:  # mypy proves the backend supplies every primitive of the shared algorithms

    def _supplies_primitives(tx: _SQLiteTx) -> PassTx:
        return tx
