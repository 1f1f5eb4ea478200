"""How a PostgreSQL store reaches its database: its connection pools, psycopg's errors as the
store's (``StoreUnavailable`` when the store may recover by itself), and the schema's migration
(``schema.MIGRATIONS``, one transaction under an advisory lock)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from stepline._urls import shown_url
from stepline.errors import ConfigError, StoreError, StoreRefusedValue, StoreUnavailable
from stepline.store.postgres import _answers
from stepline.store.postgres import _upkeep_queries as uq
from stepline.store.postgres.schema import MIGRATIONS

# the client encoding of every connection the store opens, whatever the session's default (a
# URL's ``client_encoding``, ``PGCLIENTENCODING``, ``ALTER DATABASE/ROLE … SET``): psycopg then
# encodes texts as UTF-8, as the lone step's lane does by hand, and a ``SQL_ASCII`` database
# works (psycopg sent every ``str`` as bytes there: "operator does not exist: text = bytea")
CLIENT_ENCODING = "UTF8"
MIGRATE_LOCK = 0x5374_6570  # advisory lock serializing concurrent migrations ("Step")
# SQLSTATE classes and codes that mean "not now": the store may recover by itself
_TRANSIENT_CLASSES = ("08", "53", "57")  # connection exception, insufficient resources, operator
# serialization failure, deadlock, lock timeout; and a prepared statement gone from the
# server behind psycopg's back (``DROPPED``): the statement did nothing, and psycopg, made to
# forget its names (``forget_dropped``), prepares it again at its next execution
_TRANSIENT_CODES = {"40001", "40P01", "55P03", "26000"}
# a data exception: the server refused a value written (out of range, a NUL in a text...). The
# stores' own "1 / 0" checks (HOLD_LEASE, NONE_SPENT...) are of this class too, but only in
# optimistic transactions, whose failures are ``Replay`` (made again carefully) before this
_REFUSED_VALUE_CLASS = "22"
# a program limit exceeded by a value (54000: "index row requires 12016 bytes, maximum size is
# 8191", a key or an id too big for a B-tree entry): refused for good as well. psycopg raises
# it as an OperationalError, which would otherwise read as "unavailable, retry"
_REFUSED_LIMIT_CLASS = "54"


def link_options(url: str, seconds: float) -> dict[str, Any]:
    """libpq's settings that end a connection whose peer went silent (a network failure, the
    server's machine gone: no reset ever comes) within about ``seconds`` (the store's
    ``connect_timeout``), so that a call on it fails with ``StoreUnavailable`` instead of
    waiting: data sent and not acknowledged for that long (``tcp_user_timeout``; without it
    Linux retransmits for ~15 min, and a ``send`` waited as long), and a connection waiting for
    a reply, or idle (the wake-up listener, the presence locks), probed after half of it
    (keepalives). A live server's machine acknowledges both at once however busy the server
    is. Unix sockets ignore them. The URL's own settings of these are kept."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:  # the store's constructor says why
        given = {}
    options = {
        "tcp_user_timeout": max(1000, int(seconds * 1000)),
        "keepalives": 1,
        "keepalives_idle": max(1, int(seconds / 2)),
        "keepalives_interval": max(1, int(seconds / 5)),
        "keepalives_count": 3,
    }
    return {name: value for name, value in options.items() if name not in given}


def pool(
    url: str,
    size: int,
    timeout: float,
    name: str,
    *,
    checked: bool = False,
    configure: Callable[[psycopg.Connection[Any]], None] | None = None,
    answer_within: float | None = None,
) -> psycopg_pool.ConnectionPool[Any]:
    """A pool of autocommit connections, opened on first use; ``checked``: each connection is
    checked (a round trip) before it is handed out; ``configure``: called with each new
    connection before the pool hands it out; ``answer_within``: the seconds after which a
    round trip the server has not answered is cut (``_answers``; None: never)."""

    def configured(conn: psycopg.Connection[Any]) -> None:
        _answers.watch(conn, answer_within)  # before configure's own round trips
        if configure is not None:
            configure(conn)

    return _Pool(
        url,
        min_size=1 if checked else 0,
        max_size=size,
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(timeout)),
            "client_encoding": CLIENT_ENCODING,
            **link_options(url, timeout),
        },
        timeout=timeout,
        # the pool's background reconnect attempts back off (1 s, doubling) until this many
        # seconds, then stop until a caller asks for a connection: half of what a caller
        # waits, so the first call once the server is back is served (left at its 5 min
        # default, an outage of a few minutes left calls failing for minutes after it)
        reconnect_timeout=timeout / 2,
        check=psycopg_pool.ConnectionPool.check_connection if checked else None,
        configure=configured,
        connection_class=_answers.Connection,
        open=False,
        name=name,
    )


class _Pool(psycopg_pool.ConnectionPool[Any]):
    """A pool that remembers why its last attempt to connect failed (``last_failure``; None
    once one succeeded), so that a caller that waited for a connection in vain is told why
    (``store_error``): psycopg_pool's ``PoolTimeout`` says only how long it waited, and the
    cause (no such database, a password refused, a bad ``sslmode``) was in its log warnings
    alone. Overrides psycopg_pool's ``_connect`` (every connection it makes, from 3.1 to 3.3),
    as ``take_idle`` leans on its internals."""

    last_failure: str | None = None

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """psycopg_pool's, a statement gone from the server forgotten (``forget_dropped``)."""
        with super().connection(timeout) as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                forget_dropped(conn, exc)
                raise

    def _connect(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        try:
            conn: psycopg.Connection[Any] = super()._connect(timeout)
        except Exception as exc:
            said, url = str(exc), self.conninfo
            if isinstance(url, str):  # (psycopg_pool's may be a callable: not ours)
                said = said.replace(url, shown_url(url))  # never its password
            self.last_failure = said
            raise
        self.last_failure = None
        return conn


DROPPED = "26000"  # invalid_sql_statement_name: a prepared statement the server does not have


def forget_dropped(conn: psycopg.Connection[Any], error: BaseException) -> None:
    """After ``error`` on ``conn``: when a statement psycopg prepared was gone from the server
    (``DROPPED``: a connection pooler's ``DEALLOCATE ALL`` or ``DISCARD ALL`` behind psycopg's
    back), psycopg forgets every name it prepared on ``conn``, and the deallocations it meant
    to send (of names that may be gone as well: each would fail the same way). Else it would
    execute the missing name again at each use, failing each time, on a connection the pool
    keeps handing out. Its statements are prepared anew, under new names (psycopg never reuses
    one on a connection), as at first; a name the server still had stays there unused until the
    connection ends. Leans on psycopg's prepared-statement cache, as the store's pipeline does
    (``_pipeline``; the versions bounded in pyproject)."""
    if isinstance(error, psycopg.Error) and error.sqlstate == DROPPED and not conn.closed:
        cache = conn._prepared
        cache._names.clear()
        cache._to_flush.clear()


def last_failure(*pools: psycopg_pool.ConnectionPool[Any]) -> str | None:
    """Why the last attempt of one of ``pools`` to connect failed, if it did."""
    for pool in pools:
        failure = pool.last_failure if isinstance(pool, _Pool) else None
        if failure is not None:
            return failure
    return None


def take_idle(pool: psycopg_pool.ConnectionPool[Any]) -> psycopg.Connection[Any] | None:
    """An idle connection of ``pool`` if one is there now, else None: never a wait nor a
    connect (for an event loop). Given back with ``pool.putconn``, which never waits either
    for a connection idle or broken (one in a transaction would be rolled back: close it
    first). The one given back last (``getconn`` takes the oldest): a loop's step commits,
    one after the other, go to one server process while it is free, not to each idle one in
    turn. Leans on psycopg_pool's internals (its lock and deque of idle connections, as
    ``getconn`` takes one), stable from 3.1 to 3.3: tests/store/test_pg_loop_commits.py."""
    with pool._lock:  # held briefly by the pool's threads, never across I/O
        if pool._closed or not pool._pool:
            return None
        conn: psycopg.Connection[Any] = pool._pool.pop()
        if len(pool._pool) < pool._nconns_min:
            pool._nconns_min = len(pool._pool)
    conn._pool = pool  # as getconn marks it (putconn checks it)
    return conn


def conflicted(error: Exception) -> bool:
    """Whether ``error`` ended its transaction on a conflict with another (a deadlock, a
    serialization failure): the server rolled it back, nothing of it committed."""
    return isinstance(error, psycopg.Error) and error.sqlstate in _CONFLICTS


_CONFLICTS = ("40001", "40P01")


def store_error(error: Exception, label: str, why: str | None = None) -> StoreError | None:
    """``Store.store_error`` for the database ``label``; ``why``: why the last attempt to
    connect failed (``last_failure``), said when no connection came in time."""
    if isinstance(error, StoreError):
        return error
    found: StoreError
    if isinstance(error, psycopg_pool.PoolTimeout):
        cause = "" if why is None else f": the last attempt: {why}"
        found = StoreUnavailable(f"cannot connect: {error}{cause}", label)
    elif isinstance(error, psycopg.Error):
        state = error.sqlstate or ""
        if state[:2] == _REFUSED_LIMIT_CLASS:
            found = StoreRefusedValue(str(error), label)
        elif (
            isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
            or state[:2] in _TRANSIENT_CLASSES
            or state in _TRANSIENT_CODES
        ):
            found = StoreUnavailable(str(error), label)
        elif state[:2] == _REFUSED_VALUE_CLASS or isinstance(error, psycopg.DataError):
            # (psycopg refuses a NUL in a text itself, before sending it: no SQLSTATE)
            found = StoreRefusedValue(str(error), label)
        else:
            found = StoreError(str(error), label)
    else:
        return None
    found.__cause__ = error
    return found


MIGRATE_ATTEMPTS = 5


def migrate(conn: psycopg.Connection[Any], label: str) -> None:
    """Bring the schema of ``conn``'s database (``label``) up to date, in one transaction,
    tried again when it lost a deadlock (``conflicted``): a migration's DDL locks tables in its
    order while another session plans a statement over them in its own (a new pool connection
    of this store preparing its statements, another process opening the database), and the
    server ends one of the two; rolled back whole, it is tried again at once. Raises
    ``ConfigError`` for a database that holds another application's tables or that a newer
    Stepline made. Without a deadline on the server's answers (``_answers.lifted``): a
    migration waits for another's lock, and builds indexes on tables of any size."""
    for attempt in range(1, MIGRATE_ATTEMPTS + 1):
        try:
            with _answers.lifted(conn):
                _migrate_once(conn, label)
            return
        except psycopg.Error as exc:
            if attempt == MIGRATE_ATTEMPTS or not conflicted(exc):
                raise


def _migrate_once(conn: psycopg.Connection[Any], label: str) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        _check_is_ours(conn, label)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        current = _version(conn, label)
        for number, script in enumerate(MIGRATIONS, start=1):
            if number > current:
                conn.execute(script.encode())
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))


def schema_version(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(the database's schema version, the newest this Stepline knows); 0: no schema."""
    tables = {r[0] for r in conn.execute(uq.TABLE_NAMES)}
    if "schema_version" not in tables:
        return 0, len(MIGRATIONS)
    row = conn.execute(uq.SCHEMA_VERSION).fetchone()
    return (int(row[0] or 0) if row else 0), len(MIGRATIONS)


def _version(conn: psycopg.Connection[Any], label: str) -> int:
    row = conn.execute(uq.SCHEMA_VERSION).fetchone()
    current = int(row[0] or 0) if row else 0
    if current > len(MIGRATIONS):
        raise ConfigError(
            f"the database {label} was made by a newer Stepline (schema version "
            f"{current}; this one knows up to {len(MIGRATIONS)}): upgrade Stepline"
        )
    return current


def _check_is_ours(conn: psycopg.Connection[Any], label: str) -> None:
    tables = {r[0] for r in conn.execute(uq.TABLE_NAMES)}
    if not tables or ("schema_version" in tables and "runs" in tables):
        return
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    raise ConfigError(
        f"{label} is not a Stepline database: it holds other tables ({shown}); give "
        "Stepline a database (or a schema, with ?options=-csearch_path=...) of its own"
    )
