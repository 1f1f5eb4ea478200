"""``stepline apps list|remove``: the apps registered on a database (the trigger catalog that
hands each app the events of the others), and removing a decommissioned one.

``stepline apps sync URL``: ask an Inngest SDK app to sync with the server it is set up for.
The app answers the ``PUT`` by posting its functions to ``/fn/register`` of the server in its
own configuration (``INNGEST_BASE_URL``, ``INNGEST_DEV=http://127.0.0.1:8288``, ...): point it
at ``stepline dev`` or ``stepline server``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stepline.cli import _render as render
from stepline.cli._common import CliError, db_option, json_flag, make_console, open_app
from stepline.store.records import AppRecord


@click.group()
def apps() -> None:
    """The apps registered on a database; Inngest SDK apps (served over HTTP)."""


@apps.command("list")
@json_flag
@db_option
def list_apps(as_json: bool, db: str | None) -> None:
    """List the apps registered on the database (--db): each app's functions and the events
    that start them, its workers (alive, or when one was last seen), and the events other apps
    handed to it that wait for its workers. An app none of whose workers will start again
    keeps receiving events until `stepline apps remove APP`."""
    app = open_app(None, db, read_only=True)
    try:
        found = asyncio.run(app.apps())
    finally:
        app.close()
    console = make_console()
    if as_json:
        console.print_json(data=[_app_dict(a) for a in found])
        return
    if not found:
        console.print("No apps registered.")
        return
    table = Table(box=None, header_style="bold dim", pad_edge=False)
    table.add_column("APP", style="bold", no_wrap=True)
    table.add_column("FUNCTIONS", overflow="fold")
    table.add_column("WORKERS", no_wrap=True)
    table.add_column("WAITING", justify="right", no_wrap=True)
    for record in found:
        table.add_row(
            Text(record.app_id),
            Text("\n".join(f"{fn} <- {', '.join(names)}" for fn, names in _functions(record))),
            _workers(record),
            Text(str(record.waiting), style="yellow" if record.waiting else ""),
        )
    console.print(table)


def _functions(record: AppRecord) -> list[tuple[str, list[str]]]:
    by_function: dict[str, list[str]] = {}
    for row in record.triggers:
        by_function.setdefault(row.function_id, []).append(row.event_name)
    return list(by_function.items())


def _last_seen(record: AppRecord) -> datetime | None:
    seen = record.last_seen_at
    return None if seen is None else datetime.fromtimestamp(seen).astimezone()


def _workers(record: AppRecord) -> Text:
    if record.live_workers:
        return Text(f"{record.live_workers} alive", style="green")
    seen = _last_seen(record)
    if seen is None:
        return Text("none registered", style="dim")
    return Text(f"none alive (last seen {render.local_time(seen)})", style="yellow")


def _app_dict(record: AppRecord) -> dict[str, Any]:
    seen = _last_seen(record)
    return {
        "app_id": record.app_id,
        "functions": [{"id": fn, "events": names} for fn, names in _functions(record)],
        "live_workers": record.live_workers,
        "last_seen_at": None if seen is None else seen.isoformat(),
        "waiting": record.waiting,
    }


@apps.command("remove")
@click.argument("app_id", metavar="APP")
@click.option(
    "--force",
    is_flag=True,
    help="Remove the app even though a worker of it is alive (it comes back when a worker of "
    "it next starts).",
)
@db_option
def remove(app_id: str, force: bool, db: str | None) -> None:
    """Remove app APP (decommissioned: none of its workers will start again) from the trigger
    catalog of the database (--db) and drop the events waiting for it: other apps' events are
    no longer handed to its functions, and the Inngest-SDK apps it stored (a server started
    again under its id restores none). Its runs and events stay. Refused while a worker of it
    is alive, unless --force: a worker of the app that starts again registers it again."""
    app = open_app(None, db)
    try:
        known = {a.app_id for a in asyncio.run(app.apps())}
        if app_id not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise CliError(f"no app {app_id!r} is registered (registered: {listed})")
        done = asyncio.run(app.remove_app(app_id, force=force))
    finally:
        app.close()
    if done.refused:
        raise CliError(
            f"app {app_id!r} has {render.count(done.live_workers, 'live worker')}: stop "
            "them first (a worker that starts registers its app again), or pass --force"
        )
    sdk = f", {render.count(done.sdk_apps, 'stored SDK app')}" if done.sdk_apps else ""
    make_console().print(
        f"Removed app {escape(app_id)}: {render.count(done.triggers, 'trigger')}, "
        f"{render.count(done.dropped, 'waiting event')} dropped{sdk}.",
        soft_wrap=True,
    )


@apps.command("sync")
@click.argument("url")
@click.option(
    "--signing-key",
    envvar="STEPLINE_SIGNING_KEY",
    show_envvar=True,
    help="Sign the request (an app in production mode requires it).",
)
@click.option(
    "--server-kind",
    type=click.Choice(["dev", "cloud"]),
    default="dev",
    show_default=True,
    help="The app's mode: an SDK refuses a sync from a server of the other kind.",
)
def sync(url: str, signing_key: str | None, server_kind: str) -> None:
    """Ask the SDK app served at URL (its serve endpoint, e.g. http://localhost:3000/api/inngest)
    to sync: it registers its functions with its Stepline server."""
    import httpx

    from stepline.drivers.inngest import SigningKey, sync_request
    from stepline.drivers.inngest._sync import ServerKind

    key = SigningKey.parse(signing_key) if signing_key else None
    kind: ServerKind = "cloud" if server_kind == "cloud" else "dev"
    body, headers = sync_request(url, server_kind=kind, key=key, now=time.time())
    try:
        response = httpx.put(url, content=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise CliError(f"could not reach {url}: {exc}") from exc
    if response.status_code >= 300:
        raise CliError(f"{url} answered {response.status_code}: {response.text[:500]}")
    click.echo(f"synced {url} ({response.status_code})")
