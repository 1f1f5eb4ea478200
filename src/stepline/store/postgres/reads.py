"""The PostgreSQL store's connections and its reads: what the dashboard, the CLI and a worker's
hot path read outside any write transaction.

Two pools: the checked one for reads that may come after a long idle time and for every write,
and a read pool whose connections are not checked before use (a round trip less; a read that
finds its connection broken is made again, see ``_read``). Reads outside a transaction see
committed state; ``load_run`` reads in one statement, so in one snapshot, and ``stats`` and
``queue_states`` in one REPEATABLE READ transaction (``_snapshot``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
import psycopg_pool

from stepline.errors import StoreError
from stepline.serde import loads
from stepline.store import _rows as shapes
from stepline.store._catalog import app_records
from stepline.store._clauses import match_sql
from stepline.store.postgres import _answers, _database, _pipeline, _rows, _search
from stepline.store.postgres import _lease_queries as lq
from stepline.store.postgres import _read_queries as rq
from stepline.store.postgres import _upkeep_queries as uq
from stepline.store.postgres import queries as q
from stepline.store.postgres._handoffs import GENERIC, prepare_statements
from stepline.store.postgres._statements import at_once
from stepline.store.records import (
    AppRecord,
    EventFilter,
    EventRecord,
    EventRunRecord,
    FunctionSet,
    HistoryRecord,
    QueueState,
    RunFilter,
    RunRecord,
    RunState,
    SkipRecord,
    StepRecord,
    StoredEvent,
    StoreStats,
    WorkerRecord,
)
from stepline.store.search_records import RunClause, SearchWindow

_NEXT_DUE_OF = at_once(lq.NEXT_DUE_OF)

P = ParamSpec("P")
T = TypeVar("T")


def raising_store_errors(read: Callable[P, T]) -> Callable[P, T]:
    """A read that raises ``StoreError`` (``StoreUnavailable`` when transient), never psycopg's."""

    @functools.wraps(read)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return read(*args, **kwargs)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            store = args[0]
            assert isinstance(store, PostgresReads)
            raise store._translated(exc) from exc

    return wrapper


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each new pool connection: no JIT compilation (the store's statements are short; a plan
    whose estimated cost crosses ``jit_above_cost``, a recursive skip-scan say, was compiled at
    every execution: 30-80 ms for a statement that runs in 0.3 ms), then its prepared
    statements (``prepare_statements``)."""
    conn.execute("SET jit = off")
    prepare_statements(conn)


class PostgresReads:
    """The connections to one PostgreSQL database, and the Store's reads on them
    (``PostgresStore`` adds the writes)."""

    def __init__(
        self,
        url: str,
        max_connections: int,
        connect_timeout: float,
        answer_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        # a round trip the server has not answered within it is cut (``_answers``; None: never)
        self.answer_timeout = answer_timeout
        # each new connection prepares the lease by name and the hand-off (prepare_statements)
        self._pool = _database.pool(
            url,
            max_connections,
            connect_timeout,
            "stepline",
            checked=True,
            configure=_configure,
            answer_within=answer_timeout,
        )
        # the worker's hot reads (load_run, next_due_at): connections not checked before use (a
        # round trip less); a read that finds its connection broken is made again (_read)
        self._read_pool = _database.pool(
            url,
            max_connections,
            connect_timeout,
            "stepline-read",
            configure=_configure,
            answer_within=answer_timeout,
        )
        self._opened = False

    @property
    def label(self) -> str:
        """The database for messages (without a password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return "postgresql"
        host, port, db = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
        return f"postgresql://{host}{':' + str(port) if port else ''}/{db}"

    # -- connections ------------------------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._opened:
            self._open()
        with self._pool.connection() as conn:
            yield conn

    def _open(self) -> None:
        self._pool.open(wait=False)
        self._read_pool.open(wait=False)
        self._opened = True

    def _read(self, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
        """The rows of each of ``statements`` (reads), sent in one round trip on a connection
        of the read pool; made once more if that connection was broken (the server restarted
        or ended it), after the pool replaced its broken idle ones: a read can be repeated."""
        if not self._opened:
            self._open()
        for attempt in (1, 2):
            try:
                with self._read_pool.connection() as conn:
                    if len(statements) == 1:
                        return [conn.execute(*statements[0]).fetchall()]
                    # one write of our own pipeline (AT_ONCE's texts prepared at once)
                    return [rows or [] for rows in _pipeline.send_all(conn, statements)]
            except psycopg.OperationalError as exc:
                if attempt == 2 or _answers.cut(exc):  # (a server that did not answer: once)
                    raise
                self._read_pool.check()  # the other idle ones may be broken too: replaced
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close both pools (the store opens them again on its next use)."""
        if self._opened:
            self._pool.close()
            self._read_pool.close()
            self._opened = False

    def store_error(self, error: Exception) -> StoreError | None:
        why = _database.last_failure(self._pool, self._read_pool)
        return _database.store_error(error, self.label, why)

    def _translated(self, error: Exception) -> StoreError:
        found = self.store_error(error)
        assert found is not None
        return found

    @contextmanager
    def _snapshot(self) -> Iterator[psycopg.Connection[Any]]:
        with self._conn() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.execute("COMMIT")

    # -- reads ------------------------------------------------------------------------------------
    @raising_store_errors
    def load_run(self, run_id: str) -> RunState | None:
        [rows] = self._read([(rq.LOAD_RUN, (run_id,))])  # one statement: one snapshot
        return _rows.run_state(rows[0]) if rows else None

    @raising_store_errors
    def get_run(self, run_id: str) -> RunRecord | None:
        with self._conn() as conn:
            row = conn.execute(rq.SELECT_RUN, (run_id,)).fetchone()
        return None if row is None else shapes.run_record(row)

    @raising_store_errors
    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        where, params = shapes.run_filter(query, "%s", uq.WAITING_FOR_WORKER)
        with self._conn() as conn:
            found = conn.execute(rq.LIST_RUNS.format(where=where), [*params, query.limit])
            return [shapes.run_record(r) for r in found]

    @raising_store_errors
    def search_window(
        self, query: RunFilter, window: int, clauses: tuple[RunClause, ...] = ()
    ) -> SearchWindow:
        where, params = shapes.run_filter(query, "%s", uq.WAITING_FOR_WORKER)
        try:
            return self._search_window(where, params, window, clauses)
        except psycopg.errors.UntranslatableCharacter:
            # an event among the window that jsonb cannot hold (a string with U+0000): the
            # clauses only narrow a search, so the whole window is the answer and the search
            # decides each run
            return self._search_window(where, params, window, ())

    def _search_window(
        self, where: str, params: list[Any], window: int, clauses: tuple[RunClause, ...]
    ) -> SearchWindow:
        if not clauses:  # every run of the window is a candidate: none numbered in SQL
            with self._conn() as conn:
                rows = conn.execute(rq.WHOLE_WINDOW.format(where=where), [*params, window + 1])
                return shapes.kept_window(rows, window)
        match, matched = match_sql(clauses, _search.CLAUSES)
        added, joins = _search.window_joins(clauses)
        statement = rq.SEARCH_WINDOW.format(where=where, match=match, added=added, join=joins)
        with self._conn() as conn:
            values = [window, *matched, *params, window + 1, window, *matched]
            rows = conn.execute(statement, values)
            return shapes.search_window(rows, window)

    @raising_store_errors
    def count_runs(self, query: RunFilter) -> int:
        where, params = shapes.run_filter(query, "%s", uq.WAITING_FOR_WORKER)
        statement = rq.COUNT_RUNS.format(where=where)
        with self._conn() as conn:
            row = conn.execute(statement, [*params, query.limit]).fetchone()
        return int(row[0]) if row else 0

    @raising_store_errors
    def get_steps(self, run_id: str) -> list[StepRecord]:
        with self._conn() as conn:
            return _rows.select_steps(conn, run_id)

    @raising_store_errors
    def get_history(self, run_id: str) -> list[HistoryRecord]:
        with self._conn() as conn:
            return [
                shapes.history_record(r) for r in conn.execute(rq.SELECT_HISTORY, {"run": run_id})
            ]

    @raising_store_errors
    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        with self._conn() as conn:
            return _rows.select_events(conn, list(internal_ids))

    @raising_store_errors
    def next_due_at(self, functions: FunctionSet | None = None) -> float | None:
        if functions is None:
            [rows] = self._read([(lq.NEXT_DUE, None)])
        else:
            ids = list(functions.function_ids)
            paused_rows, unowned = self._read(
                [(lq.PAUSED_AMONG, (functions.app_id, ids)), (lq.ANY_UNOWNED, None)]
            )
            paused = {r[0] for r in paused_rows}
            params = {
                "apps": [functions.app_id, ""]
                if functions.app_id and unowned
                else [functions.app_id],
                "fns": [f for f in ids if f not in paused],
                "app": functions.app_id,
                "all": ids,
            }
            # its generic plan, made once per connection (``at_once``), where each of its first
            # executions planned it for its parameters (2.5-3.8 ms of the server's CPU)
            _, rows = self._read([(GENERIC, None), (_NEXT_DUE_OF, params)])
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    @raising_store_errors
    def next_start_deadline(self, functions: FunctionSet) -> float | None:
        params = {"apps": [functions.app_id, ""], "fns": list(functions.function_ids)}
        [rows] = self._read([(lq.NEXT_START_DEADLINE_OF, params)])
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    @raising_store_errors
    def apps(self, now: float) -> list[AppRecord]:
        rows, workers, waiting = self._read(
            [(q.CATALOG_ROWS, None), (q.APP_WORKERS, (now,)), (q.APP_INBOX, None)]
        )
        return app_records(rows, workers, waiting)

    @raising_store_errors
    def live_workers(self, now: float) -> list[WorkerRecord]:
        with self._conn() as conn:
            return [
                WorkerRecord(r[0], r[1], tuple(loads(r[2])), r[3], r[4], r[5])
                for r in conn.execute(uq.LIVE_WORKERS, (now,))
            ]

    @raising_store_errors
    def list_skips(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        where, params = ("WHERE function_id = %s", [function_id]) if function_id else ("", [])
        statement = q.LIST_SKIPS.format(where=where)
        with self._conn() as conn:
            return [SkipRecord(*r) for r in conn.execute(statement, [*params, limit])]

    @raising_store_errors
    def sdk_apps(self, app_id: str) -> list[tuple[str, bytes]]:
        with self._conn() as conn:
            rows = conn.execute(uq.SDK_APPS, (app_id,)).fetchall()
        return [(str(name), bytes(body)) for name, body in rows]

    @raising_store_errors
    def paused_functions(self, app_id: str | None = None) -> set[str]:
        with self._conn() as conn:
            if app_id is None:
                return {r[0] for r in conn.execute(uq.PAUSED)}
            return {r[0] for r in conn.execute(uq.PAUSED_IN, (app_id,))}

    @raising_store_errors
    def list_events(self, query: EventFilter) -> list[StoredEvent]:
        where, params = shapes.event_filter(query, "%s")
        with self._conn() as conn:
            rows: Sequence[Any]
            if query.id_below is None or query.name is None:  # one statement, as planned
                listing = rq.LIST_EVENTS if query.id_below is None else rq.LIST_EVENTS_BY_ID_PLANNED
                rows = conn.execute(listing.format(where=where), [*params, query.limit]).fetchall()
            else:  # by id, of a name: _rows.listed_by_id
                newest = rq.LIST_EVENTS_BY_ID_RECENT.format(where=where)
                recent = [query.id_below, shapes.recent_scan(query), *params, query.limit]
                every = rq.LIST_EVENTS_BY_ID.format(where=where)
                rows = shapes.listed_by_id(
                    query,
                    functools.partial(_fetched, conn, newest, recent),
                    functools.partial(_fetched_by_index, conn, every, [*params, query.limit]),
                )
            return [shapes.stored_event(r) for r in rows]

    @raising_store_errors
    def steps_of(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        found: dict[str, list[StepRecord]] = {}
        with self._conn() as conn:
            for r in conn.execute(rq.STEPS_OF, (list(run_ids),)):
                found.setdefault(r[0], []).append(shapes.step_record(r))
        return found

    @raising_store_errors
    def event_runs(self, event_ids: Sequence[str], limit: int = 100) -> list[EventRunRecord]:
        with self._conn() as conn:
            found = conn.execute(rq.EVENT_RUNS, (list(event_ids), limit))
            return [EventRunRecord(r[0], r[1], shapes.run_record(r[2:])) for r in found]

    @raising_store_errors
    def stats(self, now: float) -> StoreStats:
        with self._snapshot() as conn:
            by_status = {r[0]: int(r[1]) for r in conn.execute(rq.RUNS_BY_STATUS)}
            depth_row = conn.execute(rq.QUEUE_DEPTH).fetchone()
            due_row = conn.execute(rq.QUEUE_DUE, (now,)).fetchone()
        depth = int(depth_row[0]) if depth_row else 0
        due, oldest = (int(due_row[0]), due_row[1]) if due_row else (0, None)
        return StoreStats(by_status, depth, due, oldest)

    @raising_store_errors
    def queue_states(self, run_ids: Sequence[str], now: float) -> list[QueueState]:
        ids = list(run_ids)
        with self._snapshot() as conn:
            return shapes.queue_states(
                ids,
                conn.execute(rq.QUEUE_STATES, (now, ids)).fetchall(),
                conn.execute(rq.WAITS_OF_RUNS, (ids,)).fetchall(),
                lambda: [(r[0], r[2]) for r in conn.execute(lq.BUSY_SLOTS, (now,))],
            )


def _fetched(conn: psycopg.Connection[Any], statement: str, params: list[Any]) -> list[Any]:
    return conn.execute(statement, params).fetchall()


def _fetched_by_index(
    conn: psycopg.Connection[Any], statement: str, params: list[Any]
) -> list[Any]:
    """``statement``'s rows in a transaction of their own with sequential scans off
    (``rq.BY_INDEX``): read by the filter's index, never the whole table."""
    with conn.transaction():
        conn.execute(rq.BY_INDEX)
        return conn.execute(statement, params).fetchall()
