"""``stepline events list`` and ``stepline events show``: the events a database received."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import click

from stepline.cli import _render as render
from stepline.cli._common import (
    POINT_IN_TIME,
    CliError,
    app_option,
    db_option,
    json_flag,
    limit_option,
    make_console,
    open_app,
    print_json,
)
from stepline.cli._remote import RemoteApp, open_remote, remote_options
from stepline.sdk.app import App
from stepline.sdk.run import EventRun
from stepline.server.views import event_json, event_run_json
from stepline.store.records import EventRecord


@click.group()
def events() -> None:
    """List and show the events received (by `send`, the event API, steps, the engine)."""


@events.command("list")
@click.option(
    "--name",
    metavar="NAME",
    envvar="STEPLINE_EVENT_NAME",
    show_envvar=True,
    help="Only events of this name.",
)
@click.option(
    "--since",
    type=POINT_IN_TIME,
    envvar="STEPLINE_SINCE",
    show_envvar=True,
    help="Only events received at or after this time (ISO 8601, or a duration ago: 90m, 2d).",
)
@click.option(
    "--until",
    type=POINT_IN_TIME,
    envvar="STEPLINE_UNTIL",
    show_envvar=True,
    help="Only events received at or before this time.",
)
@limit_option(20, "At most this many events.")
@json_flag
@app_option
@db_option
@remote_options
def list_events(
    name: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """List events, newest first (of every app sharing the database)."""
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db, read_only=True)
    try:
        query = app.events(name=name, received_after=since, received_before=until, limit=limit)
        found = asyncio.run(query)
    finally:
        app.close()
    if as_json:
        print_json([event_json(e.event, e) for e in found])
        return
    from rich.table import Table  # rich is loaded for a human's output only, never for --json
    from rich.text import Text

    console = make_console()
    if not found:
        console.print("No events.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("EVENT ID", "NAME", "RECEIVED", "DATA"):
        table.add_column(column, no_wrap=column != "DATA", overflow="ellipsis")
    for stored in found:
        received = render.short_time(datetime.fromtimestamp(stored.received_at, UTC))
        name_text = Text(stored.event.name)
        if stored.duplicate:
            name_text.append(" (duplicate)", style="dim")
        table.add_row(
            stored.event.internal_id,
            name_text,
            received,
            render.compact_json(stored.event.data, 80),
        )
    console.print(table)


@events.command("show")
@click.argument("event_id")
@json_flag
@app_option
@db_option
@remote_options
def show_event(
    event_id: str,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """Show one event (by the id `send` or the event API returned) and the runs it started,
    resumed (a wait it resolved) and cancelled."""
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db, read_only=True)
    try:
        event, acted_on = asyncio.run(_read_event(app, event_id))
    finally:
        app.close()
    if event is None:
        raise CliError(f"no event {event_id!r}")
    if as_json:
        print_json({**event_json(event), "runs": [event_run_json(r) for r in acted_on]})
        return
    from rich.table import Table

    console = make_console()
    console.print(f"[bold]{event.name}[/]  event {event.internal_id}", soft_wrap=True)
    if event.id is not None:
        console.print(f"sender id {event.id}", soft_wrap=True)
    console.print(f"ts {render.short_time(datetime.fromtimestamp(event.ts, UTC))}")
    console.print_json(data={"data": event.data, "user": event.user})
    if not acted_on:
        console.print("It started, resumed and cancelled no run.")
        return
    table = Table(
        title="Runs it started, resumed or cancelled",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for column in ("EFFECT", "RUN ID", "FUNCTION", "STATUS"):
        table.add_column(column, no_wrap=True)
    for found in acted_on:
        run = found.run
        table.add_row(found.effect, run.run_id, run.function_id, render.status_text(run.status))
    console.print(table)


async def _read_event(
    app: App | RemoteApp, event_id: str
) -> tuple[EventRecord | None, list[EventRun]]:
    event = await app.get_event(event_id)
    if event is None:
        return None, []
    return event, await app.event_runs(event_id)
