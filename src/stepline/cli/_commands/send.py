"""``stepline send``: send an event."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from stepline.cli._common import (
    JSON_OBJECT,
    CliUsageError,
    app_option,
    db_option,
    load_app,
    make_console,
    use_db,
)
from stepline.expressions import compile_expression
from stepline.sdk.app import App
from stepline.sdk.event import Event

SKIPS_SEEN = 100  # the newest skip records searched for the event's


@click.command()
@click.argument("name")
@click.option(
    "--data",
    type=JSON_OBJECT,
    envvar="STEPLINE_DATA",
    show_envvar=True,
    help="The event's data, a JSON object (default {}).",
)
@click.option(
    "--id",
    "event_id",
    metavar="DEDUP_ID",
    envvar="STEPLINE_EVENT_ID",
    show_envvar=True,
    help="De-duplication id: an event with an id seen in the last 24 h starts nothing.",
)
@app_option
@db_option
def send(
    name: str,
    data: dict[str, Any] | None,
    event_id: str | None,
    app_ref: str | None,
    db: str | None,
) -> None:
    """Send the event NAME; print its id and the runs it started.

    Triggers are evaluated by the app's functions, so --app is required; the runs are queued
    for a worker (`stepline worker` or `stepline dev`) to execute.
    """
    if app_ref is None:
        raise CliUsageError(
            "stepline send needs --app MODULE:APP (or STEPLINE_APP): triggers are evaluated by "
            "the app's functions, so with --db alone the event would be stored but start no runs"
        )
    app = load_app(app_ref)
    use_db(app, db)
    try:
        asyncio.run(_send(app, Event(name=name, data=data or {}, id=event_id), make_console()))
    finally:
        app.close()


async def _send(app: App, event: Event, console: Console) -> None:
    [internal_id] = await app.send_async(event)
    console.print(f"event [bold]{internal_id}[/]  {escape(event.name)}")
    runs = await app.runs(event_id=internal_id)
    for run in reversed(runs):
        console.print(f"  run [bold]{run.run_id}[/]  {escape(run.function_id)}  {run.status}")
    skips = [s for s in await app.skipped(limit=SKIPS_SEEN) if s.event_id == internal_id]
    for skip in skips:
        console.print(
            f"  skipped by {escape(skip.function_id)}: {skip.reason} (see `stepline runs skipped`)",
            soft_wrap=True,
        )
    started = {run.function_id for run in runs}
    deferred = [d for d in await _deferred_by(app, internal_id) if d[0] not in started]
    for fn_id, how in deferred:
        console.print(
            f"  deferred by {escape(fn_id)} ({how}): its run starts later", soft_wrap=True
        )
    if not runs and not skips and not deferred:
        console.print(
            "  started no runs: no function of the app is triggered by it (or its filter did "
            "not match, or its id was seen in the last 24 h)",
            soft_wrap=True,
        )


async def _deferred_by(app: App, event_id: str) -> list[tuple[str, str]]:
    """The debounced or batching functions the event triggers: they start a run later."""
    waiting = [fn for fn in app.functions if fn.options.debounce or fn.options.batch_events]
    if not waiting:
        return []
    engine = app.engine
    [record] = await engine.read(engine.store.get_events, [event_id])
    payload = record.payload()
    found = []
    for fn in waiting:
        if not any(t.name == record.name and t.matches(payload) for t in fn.triggers):
            continue
        batch = fn.options.batch_events
        if fn.options.debounce is not None:
            found.append((fn.id, "debounce"))
        elif batch is not None and (
            batch.if_ is None or compile_expression(batch.if_).matches({"event": payload})
        ):
            found.append((fn.id, "batch"))
    return found
