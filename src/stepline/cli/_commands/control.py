"""``stepline runs cancel``, ``runs replay`` and ``runs skipped``: acting on runs."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stepline.cli import _render as render
from stepline.cli._common import (
    POINT_IN_TIME,
    CliError,
    CliUsageError,
    app_option,
    db_option,
    find_run,
    function_option,
    json_flag,
    limit_option,
    make_console,
    open_app,
)
from stepline.cli._remote import RemoteApp, open_remote, remote_options
from stepline.errors import ConfigError, ExpressionError
from stepline.expressions import compile_expression
from stepline.sdk.app import App
from stepline.sdk.run import Run
from stepline.store.records import TERMINAL_STATUSES, RunFilter, SkipRecord

BULK_LIMIT = 10_000  # App.cancel_runs looks at this many of the function's newest runs
DEFAULT_REASON = "cancelled from the CLI"
EVENT_CHUNK = 500  # event ids per query (SQLite bounds the parameters of one statement)


# -- cancel ----------------------------------------------------------------------------------------
@click.command("cancel")
@click.argument("run_ref", metavar="[RUN_ID]", required=False)
@function_option("Cancel every unfinished run of this function (instead of one RUN_ID).")
@click.option(
    "--since",
    type=POINT_IN_TIME,
    envvar="STEPLINE_SINCE",
    show_envvar=True,
    help="With --function: only runs created at or after this time (ISO 8601, local time "
    "without an offset; or a duration ago such as 2h).",
)
@click.option(
    "--until",
    type=POINT_IN_TIME,
    envvar="STEPLINE_UNTIL",
    show_envvar=True,
    help="With --function: only runs created at or before this time (as --since).",
)
@click.option(
    "--if",
    "condition",
    metavar="CEL",
    envvar="STEPLINE_IF",
    show_envvar=True,
    help="With --function: only runs whose triggering event satisfies this CEL expression "
    "(e.g. 'event.data.userId == \"u-1\"').",
)
@click.option(
    "--reason",
    default=DEFAULT_REASON,
    show_default=True,
    envvar="STEPLINE_REASON",
    show_envvar=True,
    help="Why: kept in the run's history and in inngest/function.cancelled.",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    envvar="STEPLINE_YES",
    show_envvar=True,
    help="With --function: do not ask for confirmation (it is only asked on a terminal).",
)
@json_flag
@app_option
@db_option
@remote_options
def cancel(
    run_ref: str | None,
    function_id: str | None,
    since: datetime | None,
    until: datetime | None,
    condition: str | None,
    reason: str,
    yes: bool,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """Cancel RUN_ID, or with --function the unfinished runs of a function.

    A cancelled run ends CANCELLED at once: its sleeps and waits are dropped, a step already
    executing finishes but nothing after it runs, and inngest/function.cancelled is sent
    (functions it triggers start only when --app is given).

    \b
    stepline runs cancel 01JABCDE...        # one run (or its last 8 characters)
    stepline runs cancel --function process-order --since 1h --if 'event.data.amount > 100'
    """
    ctx = click.get_current_context()
    bulk_only = {"since": since, "until": until, "condition": condition, "yes": yes}
    if run_ref is not None:
        given = [
            name
            for name, value in {"function_id": function_id, **bulk_only}.items()
            if value and ctx.get_parameter_source(name) is not ParameterSource.ENVIRONMENT
        ]
        if given:
            options = ", ".join(_option_name(ctx, name) for name in given)
            raise CliUsageError(
                f"{options}: only for bulk cancellation (--function ID), not with a RUN_ID"
            )
        app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db)
        try:
            run = asyncio.run(_cancel_one(app, run_ref, reason))
        finally:
            app.close()
        _print_cancelled(make_console(), run.function_id, [run.run_id], as_json)
        return
    if function_id is None:
        raise CliUsageError("give a RUN_ID to cancel, or --function ID to cancel runs in bulk")
    if since is not None and until is not None and since > until:
        raise CliUsageError(
            f"--since ({render.local_time(since)}) is after --until ({render.local_time(until)})"
        )
    if condition is not None:
        try:
            compile_expression(condition)
        except ExpressionError as exc:
            raise CliUsageError(f"--if: {exc}") from None
    # --db alone: the function's runs in every app of the database (--url: the server's app)
    every = app_ref is None and url is None
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db)
    try:
        cancelled = asyncio.run(
            _cancel_many(
                app, function_id, since, until, condition, reason, ask=not yes, all_apps=every
            )
        )
    finally:
        app.close()
    _print_cancelled(make_console(), function_id, cancelled, as_json)


def _option_name(ctx: click.Context, name: str) -> str:
    param = next(p for p in ctx.command.params if p.name == name)
    return param.opts[0]


async def _cancel_one(app: App | RemoteApp, ref: str, reason: str) -> Run:
    run = await find_run(app, ref)
    if run.done or not await app.cancel_run(run.run_id, reason):
        ended = await app.get_run(run.run_id) or run
        raise CliError(f"run {run.run_id} has already ended ({ended.status}): nothing to cancel")
    return run


async def _cancel_many(
    app: App | RemoteApp,
    function_id: str,
    since: datetime | None,
    until: datetime | None,
    condition: str | None,
    reason: str,
    *,
    ask: bool,
    all_apps: bool,
) -> list[str]:
    if ask and sys.stdin.isatty():
        if isinstance(app, RemoteApp):  # the server counts what its bulk cancel would select
            unfinished = await app.preview_count(function_id, since, until, None)
        else:
            unfinished = len(await _unfinished(app, function_id, since, until, all_apps))
        if not unfinished:
            return []
        what = _describe(function_id, since, until, unfinished)
        if condition is not None:
            what += f", those whose event matches {condition}"
        click.confirm(f"Cancel {what}?", abort=True, err=True)
    return await app.cancel_runs(
        function_id,
        started_after=since,
        started_before=until,
        if_=condition,
        reason=reason,
        limit=BULK_LIMIT,
        all_apps=all_apps,
    )


async def _unfinished(
    app: App, function_id: str, since: datetime | None, until: datetime | None, all_apps: bool
) -> list[str]:
    """The unfinished runs of a function in a time range, as ``App.cancel_runs`` selects them
    (before its ``if_`` filter): what the confirmation counts."""
    engine = app.engine
    query = RunFilter(
        function_id=function_id, limit=BULK_LIMIT, app_id=None if all_apps else app.id
    )
    records = await engine.read(engine.store.list_runs, query)
    after = since.timestamp() if since else float("-inf")
    before = until.timestamp() if until else float("inf")
    return [
        r.run_id
        for r in records
        if r.status not in TERMINAL_STATUSES and after <= r.created_at <= before
    ]


def _describe(function_id: str, since: datetime | None, until: datetime | None, n: int) -> str:
    text = f"{render.count(n, 'unfinished run')} of {function_id}"
    if since is not None:
        text += f" created since {render.local_time(since)}"
    if until is not None:
        text += f"{' and' if since is not None else ' created'} until {render.local_time(until)}"
    return text


def _print_cancelled(console: Console, function_id: str, run_ids: list[str], as_json: bool) -> None:
    if as_json:
        console.print_json(data={"cancelled": run_ids})
        return
    if not run_ids:
        console.print(f"No run of {escape(function_id)} cancelled: no unfinished run matched.")
        return
    console.print(f"Cancelled {render.count(len(run_ids), 'run')} of {escape(function_id)}:")
    for run_id in run_ids:
        console.print(f"  {run_id}")


# -- replay ----------------------------------------------------------------------------------------
@click.command("replay")
@click.argument("run_ref", metavar="RUN_ID")
@click.option(
    "--from-step",
    metavar="STEP_ID",
    envvar="STEPLINE_FROM_STEP",
    show_envvar=True,
    help="Keep the results of the steps before this one (as `stepline runs show` lists them); "
    "run it and what follows again. Default: from the start.",
)
@json_flag
@app_option
@db_option
@remote_options
def replay(
    run_ref: str,
    from_step: str | None,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """Start a new run of an ended run's function with the same events; print its id.

    The new run is queued: it executes when a worker runs (`stepline worker` or `stepline dev`).
    """
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db)
    try:
        original, new_run_id, paused = asyncio.run(
            _replay(app, run_ref, from_step, all_apps=app_ref is None and url is None)
        )
        if isinstance(app, RemoteApp):
            served = asyncio.run(app.functions_json())
            registered = any(f["id"] == original.function_id for f in served)
        else:
            registered = app_ref is None or any(f.id == original.function_id for f in app.functions)
    finally:
        app.close()
    console = make_console()
    if as_json:
        console.print_json(
            data={
                "run_id": new_run_id,
                "function_id": original.function_id,
                "replay_of": original.run_id,
                "from_step": from_step,
            }
        )
        return
    since = f" from step {from_step}" if from_step is not None else ""
    console.print(
        f"run [bold]{new_run_id}[/]  {escape(original.function_id)}  QUEUED  "
        f"[dim](replay of {original.run_id}{escape(since)})[/]",
        soft_wrap=True,
    )
    if not registered:
        console.print(
            f"[yellow]Warning:[/] the app has no function {escape(original.function_id)!r}: "
            "the run waits for a worker that has it",
            soft_wrap=True,
        )
    elif paused:
        console.print(
            f"  {escape(original.function_id)} is paused: the run is held until "
            f"`stepline functions resume {escape(original.function_id)}`",
            soft_wrap=True,
        )
    else:
        console.print("  it runs when a worker runs (stepline worker or stepline dev)")


async def _replay(
    app: App | RemoteApp, ref: str, from_step: str | None, *, all_apps: bool
) -> tuple[Run, str, bool]:
    original = await find_run(app, ref)
    if not original.done:
        raise CliError(
            f"run {original.run_id} has not ended ({original.status}): only an ended run can be "
            "replayed (cancel it first with `stepline runs cancel`)"
        )
    try:
        new_run_id = await app.replay_run(original.run_id, from_step=from_step, all_apps=all_apps)
    except ConfigError as exc:
        raise CliUsageError(str(exc)) from None
    if isinstance(app, RemoteApp):
        paused = await app.paused()
    else:
        paused = app.engine.store.paused_functions(original.app_id or app.id)
    return original, new_run_id, original.function_id in paused


# -- skipped ---------------------------------------------------------------------------------------
@click.command("skipped")
@function_option("Only runs of this function.")
@limit_option(20, "At most this many.")
@json_flag
@app_option
@db_option
@remote_options
def skipped(
    function_id: str | None,
    limit: int,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """List the runs that flow control did not start (rate limit, idempotency, singleton),
    newest first."""
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db)
    try:
        records, events = asyncio.run(_skipped(app, function_id, limit))
    finally:
        app.close()
    console = make_console()
    if as_json:
        console.print_json(data=[render.skip_dict(r, events.get(r.event_id)) for r in records])
        return
    if not records:
        console.print("No skipped runs.")
        return
    table = Table(box=None, header_style="bold dim", pad_edge=False)
    for name in ("TIME", "FUNCTION", "REASON", "EVENT ID", "EVENT"):
        table.add_column(name, no_wrap=True)
    for record in records:
        table.add_row(
            render.local_time(render.skip_time(record)),
            Text(record.function_id),
            Text(record.reason, style="yellow"),
            record.event_id,
            Text(events.get(record.event_id) or ""),
        )
    console.print(table)


async def _skipped(
    app: App | RemoteApp, function_id: str | None, limit: int
) -> tuple[list[SkipRecord], dict[str, str]]:
    """The skip records, and the names of their events by event id."""
    records = await app.skipped(function_id, limit)
    ids = list(dict.fromkeys(r.event_id for r in records))
    if isinstance(app, RemoteApp):
        found = [await app.get_event(event_id) for event_id in ids]
        return records, {e.internal_id: e.name for e in found if e is not None}
    engine = app.engine
    names: dict[str, str] = {}
    for start in range(0, len(ids), EVENT_CHUNK):
        chunk = ids[start : start + EVENT_CHUNK]
        names.update(
            (e.internal_id, e.name) for e in await engine.read(engine.store.get_events, chunk)
        )
    return records, names


# -- purge -----------------------------------------------------------------------------------------
@click.command("purge")
@click.option(
    "--before",
    type=POINT_IN_TIME,
    required=True,
    envvar="STEPLINE_BEFORE",
    show_envvar=True,
    help="Delete runs that ended before this time (ISO 8601, local time without an offset; or "
    "a duration ago such as 30d), with their steps, history and unused events.",
)
@limit_option(10_000, "At most this many runs.")
@app_option
@db_option
@remote_options
def purge(
    before: datetime,
    limit: int,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """Delete old ended runs (COMPLETED, FAILED, CANCELLED); unfinished runs are never touched."""
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db)
    try:
        deleted = asyncio.run(app.purge_runs(before=before, limit=limit))
    finally:
        app.close()
    make_console().print(
        f"Deleted {deleted} run{'s' if deleted != 1 else ''} that ended before "
        f"{render.local_time(before)}."
    )
