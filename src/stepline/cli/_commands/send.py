"""``stepline send``: send an event."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
    warn,
)
from stepline.expressions import compile_expression
from stepline.sdk.app import App
from stepline.sdk.event import Event, EventOutcome
from stepline.sdk.run import Run

SENDER_APP = "stepline-send"  # the app events sent with --db alone come from: no functions


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
@click.option(
    "--event-version",
    metavar="V",
    envvar="STEPLINE_EVENT_VERSION",
    show_envvar=True,
    help="The event's version (Inngest's v): kept and given back with it (ctx.event.v).",
)
@app_option
@db_option
def send(
    name: str,
    data: dict[str, Any] | None,
    event_id: str | None,
    event_version: str | None,
    app_ref: str | None,
    db: str | None,
) -> None:
    """Send the event NAME; print its id, the runs it started and the functions of other
    apps it was handed to.

    With --app, the app's own functions' triggers are evaluated here and their runs queued
    for a worker (`stepline worker` or `stepline dev`) to execute. Events are
    environment-wide: the functions of every other app whose workers registered on the
    database get the event too, and their workers start those runs (with their own filters
    and flow control). With --db alone the event goes to those apps only.
    """
    if app_ref is None:
        if db is None:
            raise CliUsageError(
                "stepline send needs --app MODULE:APP (or STEPLINE_APP), or --db URL (or "
                "STEPLINE_DB) alone: the event then goes to the functions of the apps whose "
                "workers registered on that database"
            )
        app = App(SENDER_APP)  # no functions: every registered app's listening ones get it
    else:
        app = load_app(app_ref)
    use_db(app, db, memory_ok=False)
    try:
        event = Event(name=name, data=data or {}, id=event_id, v=event_version or None)
        asyncio.run(_send(app, app_ref or "", event, make_console()))
    finally:
        app.close()


async def _send(app: App, app_ref: str, event: Event, console: Console) -> None:
    [outcome] = await app.send_with_outcomes(event)
    internal_id = outcome.event_id
    console.print(f"event [bold]{internal_id}[/]  {escape(event.name)}")
    runs = await app.runs(event_id=internal_id)
    for run in reversed(runs):
        console.print(f"  run [bold]{run.run_id}[/]  {escape(run.function_id)}  {run.status}")
    for run_id in outcome.resumed_run_ids:
        console.print(
            f"  resumed run [bold]{run_id}[/]{await _of(app, run_id)}: it was waiting for this "
            "event",
            soft_wrap=True,
        )
    for run_id in outcome.cancelled_run_ids:
        console.print(f"  cancelled run [bold]{run_id}[/]{await _of(app, run_id)}", soft_wrap=True)
    for fn_id, reason in outcome.skipped:
        console.print(
            f"  skipped by {escape(fn_id)}: {reason} (see `stepline runs skipped`)",
            soft_wrap=True,
        )
    started = {run.function_id for run in runs}
    deferred = [d for d in await _deferred_by(app, internal_id) if d[0] not in started]
    for fn_id, how in deferred:
        console.print(
            f"  deferred by {escape(fn_id)} ({how}): its run starts later", soft_wrap=True
        )
    for other_app, fn_id in outcome.handed_to:
        console.print(
            f"  handed to {escape(fn_id)} of app {escape(repr(other_app))}: its workers start "
            "the run (with that function's filter and flow control)",
            soft_wrap=True,
        )
    await _warn_without_workers(app, app_ref, runs, outcome.resumed_run_ids, outcome.handed_to)
    acted = runs or outcome.resumed_run_ids or outcome.cancelled_run_ids or outcome.handed_to
    if not acted and not outcome.skipped and not deferred:
        why = _why_nothing(app, event, outcome)
        if outcome.duplicate:
            console.print(f"  started no runs: {why}", soft_wrap=True)
        else:
            warn(f"the event started nothing: {why}")


async def _warn_without_workers(
    app: App,
    app_ref: str,
    runs: list[Run],
    resumed: Sequence[str],
    handed_to: Sequence[tuple[str, str]] = (),
) -> None:
    """Warn when the runs the event started or resumed, or the functions of other apps it was
    handed to, have no live worker to execute them."""
    pending = [r for r in runs if not r.done]
    for run_id in resumed:
        run = await app.get_run(run_id)
        if run is not None and not run.done:
            pending.append(run)
    stranded = sorted({r.function_id for r in pending if r.waiting_for_worker})
    if not stranded and not handed_to:
        return
    live = await app.live_workers()
    # an app's registration (its triggers) outlives its workers: the event waits in its inbox
    unserved = sorted(
        (other, fn_id)
        for other, fn_id in handed_to
        if not any(w.app_id == other and fn_id in w.function_ids for w in live)
    )
    if not stranded and not unserved:
        return
    if not live:
        what = (
            f"the runs wait until one starts (`stepline worker {app_ref}` or "
            f"`stepline dev {app_ref}`)"
            if app_ref
            else "the event waits for a worker of each app it was handed to"
        )
        warn(f"no worker is running on this database (none seen recently): {what}")
        return
    if stranded:
        warn(
            f"no running worker has {', '.join(stranded)} (of app {app.id!r}): "
            "its runs wait until a worker with it starts"
        )
    for other, fn_id in unserved:
        warn(
            f"no running worker has {fn_id} of app {other!r}: the event waits for one "
            "(`stepline apps list` shows what waits)"
        )


async def _of(app: App, run_id: str) -> str:
    run = await app.get_run(run_id)
    return f" of {escape(run.function_id)}" if run is not None else ""


def _why_nothing(app: App, event: Event, outcome: EventOutcome) -> str:
    if outcome.duplicate:
        return f"its id {event.id!r} was seen in the last 24 h (a duplicate starts nothing)"
    listening = [fn.id for fn in app.functions if any(t.name == event.name for t in fn.triggers)]
    if app.id == SENDER_APP:
        return (
            f"no app whose workers registered on this database has a function triggered by "
            f"{event.name!r}, and no run was waiting for it"
        )
    if not listening:
        return (
            f"no function of app {app.id!r} is triggered by {event.name!r}, nor of another "
            "app whose workers registered on this database, and no run was waiting for it"
        )
    return f"the trigger filter of {', '.join(listening)} did not match its data"


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
