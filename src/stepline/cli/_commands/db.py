"""``stepline db``: the database's schema (``migrate status`` / ``migrate up``), a health
check (``check``: connects, reports the schema version and the clock skew against the server)
and ``copy`` (a whole installation from one database to another, e.g. SQLite to PostgreSQL)."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stepline._urls import shown_url
from stepline.cli._common import CliError, db_option, sqlite_path
from stepline.errors import StoreError
from stepline.store import DEFAULT_DB_PATH, DurableStore, open_durable_store
from stepline.store._copy import DEFAULT_BATCH, CopyPlan, Table, copy_database


def _open(db: str | None, *, existing: bool = False) -> tuple[DurableStore, str]:
    """The database ``db`` names. ``existing`` (a command that only looks): a SQLite file that
    is not there is an error, and neither it nor its folder is made (a typo's empty database,
    left behind, would be taken for one by the commands after it)."""
    url = db or str(DEFAULT_DB_PATH)
    if url.startswith("memory:"):
        raise CliError("memory:// has no schema to manage: give a database (--db or STEPLINE_DB)")
    path = sqlite_path(url)
    if existing and path is not None and not path.exists():
        raise CliError(f"no database at {path}: `stepline db migrate up` makes one")
    return open_durable_store(url), url


def _open_source(source: str) -> DurableStore:
    """The database to copy from: one that exists and holds Stepline's schema (a typo in a path
    would otherwise make an empty database there and copy nothing, "successfully")."""
    path = sqlite_path(source)
    if path is not None and not path.exists():
        raise CliError(f"no database at {path}: nothing to copy")
    store, _ = _open(source)
    try:
        version, _ = store.schema_version()
    except StoreError as exc:
        store.close()
        raise CliError(f"cannot read the schema of {shown_url(source)}: {exc}") from exc
    if version == 0:
        store.close()
        raise CliError(f"{shown_url(source)} holds no Stepline database: nothing to copy")
    return store


@click.group()
def db() -> None:
    """The database: schema migrations and a health check."""


@db.group()
def migrate() -> None:
    """Schema migrations: `status` shows the database's version, `up` applies what is missing.

    Workers and senders apply missing migrations when they open the database; `migrate up`
    does it ahead of a deployment (concurrent runs wait for one another). A migration that
    code of the version before reads differently waits until no worker is alive on the
    database: stop the old workers first."""


@migrate.command("status")
@db_option
def migrate_status(db: str | None) -> None:
    """Show the schema version of the database and the newest this Stepline knows."""
    store, url = _open(db, existing=True)
    try:
        current, latest = store.schema_version()
    except StoreError as exc:
        raise CliError(f"cannot read the schema of {shown_url(url)}: {exc}") from exc
    finally:
        store.close()
    state = "up to date" if current == latest else f"{latest - current} migration(s) to apply"
    if current > latest:
        state = "made by a newer Stepline: upgrade Stepline"
    click.echo(f"schema version {current} of {latest}: {state}")


@migrate.command("up")
@db_option
@click.option(
    "--force",
    is_flag=True,
    help="Apply even a migration that workers of the version before would read differently "
    "while workers are registered as alive (they must be stopped: a worker that stopped "
    "without saying so counts as alive until its registration expires).",
)
def migrate_up(db: str | None, force: bool) -> None:
    """Apply the missing migrations (none if the schema is up to date). A migration that code
    of the version before reads differently is refused while workers are alive on the
    database: stop them first (or --force once they are)."""
    store, _ = _open(db)
    try:
        before, _ = store.schema_version()
        store.migrate(force=force)
        after, latest = store.schema_version()
    finally:
        store.close()
    if after == before:
        click.echo(f"schema version {after} of {latest}: up to date, nothing applied")
    else:
        click.echo(f"applied migrations {before + 1}..{after}: schema version {after} of {latest}")


@db.command("check")
@db_option
def check(db: str | None) -> None:
    """Connect, report the schema version and this machine's clock skew against the database
    server. Exits 1 when the database cannot be reached, needs migrations, or is refused to
    this machine's clock (PostgreSQL: further than 1 s from the server's)."""
    store, url = _open(db, existing=True)
    try:
        current, latest = store.schema_version()
        skew = store.clock_skew()
        refused = store.clock_refusal(skew)
    except StoreError as exc:
        raise CliError(f"cannot reach {shown_url(url)}: {exc}") from exc
    finally:
        store.close()
    click.echo("connected: yes")
    click.echo(f"schema version: {current} of {latest}")
    click.echo(f"clock skew: {skew * 1000:+.1f} ms (the server's clock minus this machine's)")
    if refused is not None:
        raise CliError(f"workers and senders on this machine are refused: {refused}")
    if current < latest:
        raise CliError(f"the schema needs {latest - current} migration(s): stepline db migrate up")
    if current > latest:
        raise CliError("the database was made by a newer Stepline: upgrade Stepline")


@db.command("copy")
@click.argument("source")
@click.argument("target")
@click.option(
    "--replace",
    is_flag=True,
    help="Delete everything the target holds first (without it a non-empty target is refused).",
)
@click.option(
    "--ignore-live-workers",
    is_flag=True,
    help="Copy even though workers are registered as alive on the source (they should be "
    "stopped: what they commit after the copy began is not copied).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Rows written per transaction.",
)
def copy(source: str, target: str, replace: bool, ignore_live_workers: bool, batch: int) -> None:
    """Copy a whole installation from SOURCE to TARGET (database URLs, e.g.
    `stepline db copy sqlite:///.stepline/stepline.db postgresql://user@host/stepline`).

    Everything moves with its ids: runs (sleeping, waiting, retrying, queued, debounced and
    batched ones carry on where they were), memoized steps, histories, waits, events and
    flow-control state. Both schemas are migrated first. Stop the workers on SOURCE first;
    TARGET must be empty unless --replace."""
    if source == target:
        raise CliError("the source and the target are the same database")
    source_store = _open_source(source)
    try:
        target_store, _ = _open(target)
    except BaseException:
        source_store.close()
        raise
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = progress.add_task("copying", total=None)

    def planned(plan: CopyPlan) -> None:
        progress.update(task, total=plan.total)
        progress.start()

    def copied(table: Table, rows: int) -> None:
        progress.update(task, advance=rows, description=table.name)

    try:
        plan = copy_database(
            source_store,
            target_store,
            source_name=shown_url(source),
            target_name=shown_url(target),
            replace=replace,
            live_workers_at=None if ignore_live_workers else time.time(),
            batch=batch,
            on_plan=planned,
            on_rows=copied,
        )
    except StoreError as exc:
        raise CliError(
            f"the copy failed: {exc} (the target may hold part of it: copy again with --replace)"
        ) from exc
    finally:
        progress.stop()
        source_store.close()
        target_store.close()
    counts = ", ".join(f"{name} {n}" for name, n in plan.counts.items() if n)
    shown = f"{shown_url(source)} to {shown_url(target)}"
    click.echo(f"copied {plan.total} rows from {shown}: {counts or 'nothing'}")
