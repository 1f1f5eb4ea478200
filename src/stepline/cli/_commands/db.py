"""``stepline db``: the database's schema (``migrate status`` / ``migrate up``) and a health
check (``check``: connects, reports the schema version and the clock skew against the server)."""

from __future__ import annotations

import click

from stepline.cli._common import CliError, db_option
from stepline.errors import StoreError
from stepline.store import DEFAULT_DB_PATH, DurableStore, open_durable_store


def _open(db: str | None) -> tuple[DurableStore, str]:
    url = db or str(DEFAULT_DB_PATH)
    if url.startswith("memory:"):
        raise CliError("memory:// has no schema to manage: give a database (--db or STEPLINE_DB)")
    return open_durable_store(url), url


@click.group()
def db() -> None:
    """The database: schema migrations and a health check."""


@db.group()
def migrate() -> None:
    """Schema migrations: `status` shows the database's version, `up` applies what is missing.

    Workers and senders apply missing migrations when they open the database; `migrate up`
    does it ahead of a deployment (concurrent runs wait for one another)."""


@migrate.command("status")
@db_option
def migrate_status(db: str | None) -> None:
    """Show the schema version of the database and the newest this Stepline knows."""
    store, url = _open(db)
    try:
        current, latest = store.schema_version()
    except StoreError as exc:
        raise CliError(f"cannot read the schema of {url}: {exc}") from exc
    finally:
        store.close()
    state = "up to date" if current == latest else f"{latest - current} migration(s) to apply"
    if current > latest:
        state = "made by a newer Stepline: upgrade Stepline"
    click.echo(f"schema version {current} of {latest}: {state}")


@migrate.command("up")
@db_option
def migrate_up(db: str | None) -> None:
    """Apply the missing migrations (none if the schema is up to date)."""
    store, _ = _open(db)
    try:
        before, _ = store.schema_version()
        store.migrate()
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
    server. Exits 1 when the database cannot be reached or needs migrations."""
    store, url = _open(db)
    try:
        current, latest = store.schema_version()
        skew = store.clock_skew()
    except StoreError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from exc
    finally:
        store.close()
    click.echo("connected: yes")
    click.echo(f"schema version: {current} of {latest}")
    click.echo(f"clock skew: {skew * 1000:+.1f} ms (the server's clock minus this machine's)")
    if current < latest:
        raise CliError(f"the schema needs {latest - current} migration(s): stepline db migrate up")
    if current > latest:
        raise CliError("the database was made by a newer Stepline: upgrade Stepline")
