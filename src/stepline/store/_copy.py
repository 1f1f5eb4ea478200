"""Copying a whole installation from one database to another (``stepline db copy``).

The rule lives here once: both schemas are brought up to date (the source's in a copy of
it when migrating it in place is refused while its workers are alive and the copy goes on
regardless: the file stays as they read it); every table either database
holds must be one this module knows (``TABLES``: the schema's tables with their columns), so a
table added by a migration without copy support makes the copy refuse instead of silently
leaving state behind; the target must be empty unless told to replace what it holds; the
source is read in one consistent snapshot and written to the target in batches, one
transaction per batch, rows unchanged (run ids, event ids, lease tokens, due times and
history numbers are kept, so in-flight runs carry on where they were).

Each backend supplies the small primitives of ``Copyable`` (its own SQL: the engine and the CLI
never write any): which tables and columns it holds, a snapshot that counts and reads a
table's rows in batches, loading a batch, and what to do once a table is loaded (PostgreSQL
moves its identity counters past the copied numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from stepline.errors import ConfigError
from stepline.store.records import WorkerRecord

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    """One table as copied: its columns (in this order on both sides), the columns that order
    the dump (its key), the columns holding booleans and bytes (SQLite stores the former as
    integers), and the column the database numbers itself, if any."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    flags: frozenset[str] = field(default_factory=frozenset)
    blobs: frozenset[str] = field(default_factory=frozenset)
    identity: str | None = None


def _table(
    name: str,
    columns: str,
    key: str,
    *,
    flags: str = "",
    blobs: str = "",
    identity: str | None = None,
) -> Table:
    return Table(
        name,
        tuple(columns.split()),
        tuple(key.split()),
        frozenset(flags.split()),
        frozenset(blobs.split()),
        identity,
    )


TABLES: tuple[Table, ...] = (
    _table(
        "events",
        "internal_id name data user_data sender_id ts v received_at duplicate",
        "internal_id",
        flags="duplicate",
        blobs="data user_data",
    ),
    _table("event_ids", "sender_id seen_at", "sender_id"),
    _table(
        "runs",
        "run_id function_id status event_ids created_at started_at ended_at output error "
        "attempt parent_run_id parent_step_hash start_timeout finish_timeout singleton_key "
        "app_id worker_id cancelled_lease passes",
        "run_id",
        blobs="output",
    ),
    _table("run_events", "event_id run_id effect", "event_id run_id effect"),
    _table(
        "steps",
        "run_id hash step_id kind position status output error attempts due_at started_at ended_at",
        "run_id hash",
        blobs="output",
    ),
    _table(
        "history",
        "seq run_id ts kind step_id attempt duration data worker_id",
        "seq",
        identity="seq",
    ),
    _table(
        "waits",
        "wait_id run_id step_hash event_name expression index_path index_value expires_at "
        "created_at step_id",
        "wait_id",
    ),
    _table("wait_paths", "event_name path", "event_name path"),
    _table(
        "queue",
        "run_id app_id function_id due_at lease_owner lease_token lease_expires_at wake ckey1 "
        "climit1 ckey2 climit2",
        "run_id",
        flags="wake",
    ),
    _table(
        "matchers",
        "matcher_id run_id event_name expression index_path index_value expires_at created_at",
        "matcher_id",
    ),
    _table("matcher_paths", "event_name path", "event_name path"),
    _table("idempotency", "key seen_at", "key"),
    _table("gcra", "bucket tat decided_at", "bucket"),
    _table("skips", "seq event_id function_id reason at", "seq", identity="seq"),
    _table(
        "deferrals",
        "kind function_id key event_ids first_at due_at run",
        "kind function_id key",
    ),
    _table("paused", "app_id function_id", "app_id function_id"),
    _table("crons", "app_id function_id cron next_at", "app_id function_id cron"),
    _table(
        "workers",
        "worker_id app_id function_ids started_at seen_at expires_at",
        "worker_id",
    ),
    _table("worker_functions", "function_id app_id worker_id", "function_id app_id worker_id"),
    _table("sdk_apps", "app_id name registration synced_at", "app_id name", blobs="registration"),
    _table("triggers", "app_id event_name function_id", "app_id event_name function_id"),
    _table("trigger_catalog", "id version", "id"),
    _table("inbox", "seq app_id function_id event_id received_at", "seq", identity="seq"),
    _table("cancel_notes", "event_id bucket", "event_id"),
)
BY_NAME = {table.name: table for table in TABLES}
# the table a database keeps its own schema's version in: never copied (each side migrates)
SCHEMA_TABLE = "schema_version"
DEFAULT_BATCH = 1000


class Snapshot(Protocol):
    """A consistent read of a whole database (every table as of one moment)."""

    def count(self, table: Table) -> int:
        """How many rows ``table`` holds."""
        ...

    def rows(self, table: Table, batch: int) -> Iterator[list[Row]]:
        """``table``'s rows in key order, ``batch`` at a time, values in ``table.columns``
        order: booleans as ``bool``, bytes as ``bytes``."""
        ...


class Copyable(Protocol):
    """What a database backend supplies to be copied from and to."""

    def migrate(self) -> None: ...

    def location(self) -> str:
        """Where the database lives, the same text however its URL spells it: two stores
        with one location are one database."""
        ...

    def migrated_source(self, *, workers_alive: bool) -> AbstractContextManager[Copyable]:
        """This database, migrated, to be copied from while the block runs: itself, migrated
        in place, or (``workers_alive``: the copy goes on although workers are alive on it)
        when migrating it in place is refused while they are (a migration their version
        reads differently), a migrated copy of it, the database left as they read it."""
        ...

    def live_workers(self, now: float) -> list[WorkerRecord]: ...

    def table_columns(self) -> dict[str, tuple[str, ...]]:
        """Each table of the database (but the schema version's) with its columns, in the
        database's order."""
        ...

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """A consistent read of the database, open while the block runs."""
        ...

    def load_rows(self, table: Table, rows: Sequence[Row]) -> None:
        """Insert ``rows`` (as a ``Snapshot`` gives them) into ``table`` in one transaction."""
        ...

    def loaded(self, table: Table) -> None:
        """Every row of ``table`` is loaded (numbers the database gives next follow them)."""
        ...

    def wipe(self) -> None:
        """Delete every row of every table of ``TABLES`` in one transaction."""
        ...


class CopyRefused(ConfigError):
    """The copy did not start: the target holds data, the schemas differ from what this
    Stepline can copy, or workers are alive on the source."""


def check_covered(columns: dict[str, tuple[str, ...]], where: str) -> None:
    """Refuse a database holding a table (or a column) this module does not copy."""
    unknown = sorted(set(columns) - set(BY_NAME) - {SCHEMA_TABLE})
    if unknown:
        raise CopyRefused(
            f"{where} holds tables this Stepline cannot copy ({', '.join(unknown)}): use the "
            "Stepline version that made the database"
        )
    for table in TABLES:
        found = columns.get(table.name)
        if found is None:
            raise CopyRefused(f"{where} has no table {table.name}: is its schema up to date?")
        if set(found) != set(table.columns):
            extra = sorted(set(found) - set(table.columns))
            missing = sorted(set(table.columns) - set(found))
            raise CopyRefused(
                f"{where}: table {table.name} has columns this Stepline does not copy "
                f"(extra: {', '.join(extra) or 'none'}; missing: {', '.join(missing) or 'none'})"
            )


@dataclass
class CopyPlan:
    """What a copy is about to do: the rows of each table (in ``TABLES`` order)."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def copy_database(
    source: Copyable,
    target: Copyable,
    *,
    source_name: str = "the source",
    target_name: str = "the target",
    replace: bool = False,
    live_workers_at: float | None = None,
    batch: int = DEFAULT_BATCH,
    on_plan: Callable[[CopyPlan], None] | None = None,
    on_rows: Callable[[Table, int], None] | None = None,
) -> CopyPlan:
    """Copy every row of ``source`` into ``target`` (both migrated first: the source in a
    copy of its own when workers are alive on it and ``live_workers_at`` is None, see
    ``Copyable.migrated_source``). Raises ``CopyRefused`` (nothing copied) when the two are
    one database (however their URLs spell it), when the target holds rows and ``replace``
    is False, or when either database holds a table this module
    does not know, or (``live_workers_at`` given) when workers are alive on the source at
    that time: what they commit after the snapshot would be lost, and the runs they hold
    would run in two places. ``on_plan`` is told the row counts before the first row is
    written, ``on_rows`` after each batch is committed. A copy that fails midway leaves the
    batches committed so far in the target: copy again with ``replace``."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if source.location() == target.location():  # --replace would delete what it copies
        raise CopyRefused(f"{source_name} and {target_name} are the same database")
    with source.migrated_source(workers_alive=live_workers_at is None) as source:
        target.migrate()
        check_covered(source.table_columns(), source_name)
        check_covered(target.table_columns(), target_name)
        if live_workers_at is not None:
            alive = source.live_workers(live_workers_at)
            if alive:
                names = ", ".join(sorted(w.worker_id for w in alive)[:5])
                raise CopyRefused(
                    f"{len(alive)} worker(s) are alive on {source_name} ({names}): stop them "
                    "first (a worker that stopped without saying so counts as alive until its "
                    "registration expires)"
                )
        if not replace:
            with target.snapshot() as held:
                filled = [t.name for t in TABLES if held.count(t)]
            if filled:
                raise CopyRefused(
                    f"{target_name} is not empty (it holds {', '.join(filled)}): give an empty "
                    "database, or --replace to delete what it holds first"
                )
        with source.snapshot() as snap:
            plan = CopyPlan({t.name: snap.count(t) for t in TABLES})
            if on_plan is not None:
                on_plan(plan)
            if replace:
                target.wipe()
            for table in TABLES:
                for rows in snap.rows(table, batch):
                    target.load_rows(table, rows)
                    if on_rows is not None:
                        on_rows(table, len(rows))
                target.loaded(table)
        return plan


def normalized(table: Table, row: Sequence[Any]) -> Row:
    """A row read from a database with loose types (SQLite): booleans as ``bool``, bytes as
    ``bytes`` (text stored in a blob column is encoded as UTF-8)."""
    if not table.flags and not table.blobs:
        return tuple(row)
    values = list(row)
    for index, column in enumerate(table.columns):
        value = values[index]
        if value is None:
            continue
        if column in table.flags:
            values[index] = bool(value)
        elif column in table.blobs and isinstance(value, str):
            values[index] = value.encode()
        elif column in table.blobs and not isinstance(value, bytes):
            values[index] = bytes(value)
    return tuple(values)
