"""``stepline functions list|pause|resume``: an app's functions and their paused state."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stepline.cli import _render as render
from stepline.cli._common import (
    CliError,
    app_option,
    db_option,
    json_flag,
    make_console,
    open_app,
    paused_functions,
)
from stepline.cli._remote import RemoteApp, open_remote, remote_options
from stepline.drivers.inngest import SdkApps
from stepline.drivers.inngest._apps import registered_sdk_apps
from stepline.sdk.app import App
from stepline.server.views import function_json

HELD_LIMIT = 1000  # queued runs counted for a paused function ("1000+" beyond)


@click.group()
def functions() -> None:
    """List an app's functions; pause and resume them."""


@functions.command("list")
@json_flag
@app_option
@db_option
@remote_options
def list_functions(
    as_json: bool, app_ref: str | None, db: str | None, url: str | None, token: str | None
) -> None:
    """List the app's functions: triggers, flow control, and whether each is paused.

    With --app, the app's functions and those of the SDK apps synced to its database; with
    --db alone only the paused functions are known (the database holds no definitions of its
    own); with --url the server's app's functions.
    """
    if url:
        remote = open_remote(url, token, app_ref, db)
        described, held = asyncio.run(_remote_functions(remote))
        _print_functions(make_console(), remote.url, described, held, as_json, set())
        return
    app = open_app(app_ref, db, read_only=True)
    if app_ref is not None:
        serve_stored_sdk_apps(app)
    try:
        every = app_ref is None  # --db alone: the functions of every app of the database
        paused = paused_functions(app, all_apps=every)
        held = asyncio.run(_held_of(app, sorted(paused), every))
    finally:
        app.close()
    console = make_console()
    if app_ref is None:
        _list_paused_only(console, held, as_json)
        return
    described = [function_json(fn, app.id, fn.id in paused) for fn in app.functions]
    unknown = paused - {fn.id for fn in app.functions}
    _print_functions(console, f"App {app.id}", described, held, as_json, unknown)


def serve_stored_sdk_apps(app: App) -> None:
    """The SDK apps synced to ``app``'s database registered in it, as a server registers them
    at start (``SdkApps``: when the engine attaches), so their functions are listed too."""
    if registered_sdk_apps(app) is None:
        SdkApps(app)


async def _remote_functions(remote: RemoteApp) -> tuple[list[dict[str, Any]], dict[str, int]]:
    described = await remote.functions_json()
    paused = sorted(f["id"] for f in described if f["paused"])
    return described, {fn_id: await _held(remote, fn_id, False) for fn_id in paused}


def _print_functions(
    console: Console,
    owner: str,
    described: list[dict[str, Any]],
    held: dict[str, int],
    as_json: bool,
    unknown: set[str],
) -> None:
    """The functions (as ``views.function_json`` gives them) as a table or JSON."""
    if as_json:
        rows = [render.function_dict(d, d["paused"], held.get(d["id"])) for d in described]
        console.print_json(data=rows)
        return
    if not described:
        console.print(f"{escape(owner)} has no functions.")
        return
    table = Table(box=None, header_style="bold dim", pad_edge=False)
    table.add_column("FUNCTION", style="bold", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("TRIGGERS", overflow="fold")
    table.add_column("FLOW CONTROL", overflow="fold")
    for data in described:
        table.add_row(
            Text(data["id"]),
            _state(data["paused"], held.get(data["id"])),
            Text("\n".join(render.function_triggers(data)) or "invoke only"),
            Text("\n".join(render.function_options(data))),
        )
    console.print(table)
    if unknown:
        console.print(
            "[dim]Also paused in this database, not in the app: "
            f"{escape(', '.join(sorted(unknown)))}[/]",
            soft_wrap=True,
        )


def _state(paused: bool, held: int | None) -> Text:
    if not paused:
        return Text("active", style="green")
    return Text(f"paused ({_held_text(held)} held)", style="yellow")


def _held_text(held: int | None) -> str:
    if held is None:
        return "?"
    return f"{held}+" if held >= HELD_LIMIT else str(held)


def _list_paused_only(console: Console, held: dict[str, int], as_json: bool) -> None:
    if as_json:
        data = [{"id": fn_id, "paused": True, "held_runs": n} for fn_id, n in held.items()]
        console.print_json(data=data)
        return
    if not held:
        console.print("No paused functions.")
    for fn_id, n in held.items():
        console.print(f"{escape(fn_id)}  [yellow]paused ({_held_text(n)} held)[/]")
    console.print(
        "[dim]Only paused functions are listed: pass --app MODULE:APP for all of them.[/]",
        soft_wrap=True,
    )


async def _held_of(app: App | RemoteApp, function_ids: list[str], all_apps: bool) -> dict[str, int]:
    return {fn_id: await _held(app, fn_id, all_apps) for fn_id in function_ids}


async def _held(app: App | RemoteApp, function_id: str, all_apps: bool) -> int:
    """The runs of the app's function (or of every app's, ``all_apps``) waiting to start
    (QUEUED), up to ``HELD_LIMIT``."""
    found = await app.runs(
        function_id=function_id, status="QUEUED", limit=HELD_LIMIT, all_apps=all_apps
    )
    return len(found)


@functions.command("pause")
@click.argument("function_id", metavar="ID")
@app_option
@db_option
@remote_options
def pause(
    function_id: str, app_ref: str | None, db: str | None, url: str | None, token: str | None
) -> None:
    """Pause function ID: the runs it is triggered for are created but held (QUEUED), and its
    unfinished runs make no progress, until `stepline functions resume ID`.

    With --app only that app's function is paused (another app sharing the database keeps
    running its function of the same id), and the app's database is created if need be: a
    function can be paused before it is deployed. With --db alone the function is paused in
    every app of the database, until an app that registers it takes the pause over.
    """
    if url:
        remote = open_remote(url, token, app_ref, db)
        was_paused, _ = asyncio.run(_remote_toggle(remote, function_id, pause=True))
        unseen = False
    else:
        was_paused, unseen = _pause_here(function_id, app_ref, db)
    console = make_console()
    if unseen:
        click.echo(
            f"Warning: no run of {function_id!r} in this database; check the id "
            "(--app MODULE:APP checks it against the app's functions)",
            err=True,
        )
    if was_paused:
        console.print(f"{escape(function_id)} was already paused.")
        return
    console.print(
        f"Paused {escape(function_id)}: its runs are held until "
        f"`stepline functions resume {escape(function_id)}`.",
        soft_wrap=True,
    )


async def _remote_toggle(remote: RemoteApp, function_id: str, *, pause: bool) -> tuple[bool, int]:
    """Pause (or resume) a server's function: whether it was paused before, and (resuming)
    its held runs, counted before they are released."""
    described = {f["id"]: f for f in await remote.functions_json()}
    if function_id not in described:
        raise CliError(
            f"the server at {remote.url} has no function {function_id!r} (its functions: "
            f"{', '.join(described) or 'none'})"
        )
    was_paused = bool(described[function_id]["paused"])
    held = 0
    if pause and not was_paused:
        await remote.pause_function(function_id)
    if not pause and was_paused:
        held = await _held(remote, function_id, False)
        await remote.resume_function(function_id)
    return was_paused, held


def _pause_here(function_id: str, app_ref: str | None, db: str | None) -> tuple[bool, bool]:
    """Pause on a database: (whether it was paused, whether no run of it was ever seen)."""
    every = app_ref is None
    app = open_app(app_ref, db, create=not every)
    try:
        was_paused = function_id in paused_functions(app, all_apps=every)
        _check_known(app, app_ref, function_id)
        unseen = False
        if not was_paused:
            unseen = every and not asyncio.run(
                app.runs(function_id=function_id, limit=1, all_apps=True)
            )
            asyncio.run(app.pause_function(function_id, all_apps=every))
    finally:
        app.close()
    return was_paused, unseen


@functions.command("resume")
@click.argument("function_id", metavar="ID")
@app_option
@db_option
@remote_options
def resume(
    function_id: str, app_ref: str | None, db: str | None, url: str | None, token: str | None
) -> None:
    """Resume function ID: its held runs start, in the order they were queued, once a worker
    runs. With --app only that app's function (and a pause of it in every app); with --db
    alone, in every app of the database; with --url the server's app's."""
    if url:
        remote = open_remote(url, token, app_ref, db)
        was_paused, held = asyncio.run(_remote_toggle(remote, function_id, pause=False))
    else:
        was_paused, held = _resume_here(function_id, app_ref, db)
    console = make_console()
    if not was_paused:
        console.print(f"{escape(function_id)} was not paused.")
        return
    console.print(
        f"Resumed {escape(function_id)}: {render.count(held, 'held run')} "
        f"{'starts' if held == 1 else 'start'} when a worker runs.",
        soft_wrap=True,
    )


def _resume_here(function_id: str, app_ref: str | None, db: str | None) -> tuple[bool, int]:
    """Resume on a database: (whether it was paused, its held runs)."""
    every = app_ref is None
    app = open_app(app_ref, db)
    try:
        was_paused = function_id in paused_functions(app, all_apps=every)
        if not was_paused:  # a paused function since removed from the app can still be resumed
            _check_known(app, app_ref, function_id)
        held = 0
        if was_paused:
            held = asyncio.run(_resume(app, function_id, every))
    finally:
        app.close()
    return was_paused, held


async def _resume(app: App, function_id: str, all_apps: bool) -> int:
    held = await _held(app, function_id, all_apps)
    await app.resume_function(function_id, all_apps=all_apps)
    return held


def _check_known(app: App, app_ref: str | None, function_id: str) -> None:
    """With --app, the function must be one of the app's (a typo would pause nothing)."""
    if app_ref is None:
        return
    ids = [fn.id for fn in app.functions]
    if function_id not in ids:
        raise CliError(
            f"app {app.id!r} has no function {function_id!r} (its functions: "
            f"{', '.join(ids) or 'none'})"
        )
