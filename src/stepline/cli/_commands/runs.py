"""``stepline runs list``, ``stepline runs search`` and ``stepline runs show``: what happened to
runs."""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

import click

from stepline.cli import _render as render
from stepline.cli._common import (
    CliUsageError,
    app_option,
    cursor_option,
    db_option,
    find_run,
    function_option,
    json_flag,
    limit_option,
    make_console,
    next_page,
    open_app,
    print_json,
)
from stepline.cli._remote import RemoteApp, open_remote, remote_options
from stepline.errors import ExpressionError
from stepline.sdk.app import App
from stepline.sdk.run import HistoryEntry, Run
from stepline.server import views

if TYPE_CHECKING:  # rich is imported for a human's output only, never for --json
    from rich.console import Group
    from rich.table import Table

STATUSES = (
    "QUEUED",
    "RUNNING",
    "SLEEPING",
    "WAITING",
    "RETRYING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
)
MIN_OUTPUT_WIDTH = 12
_status_option = click.option(
    "--status",
    type=click.Choice(STATUSES, case_sensitive=False),
    envvar="STEPLINE_STATUS",
    show_envvar=True,
    help="Only runs in this status.",
)


CONTROL = ("cancel", "replay", "skipped", "purge")  # in control.py


class _Runs(click.Group):
    """``runs`` with the subcommands of control.py imported when one is asked for (``runs list``
    does not load them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *CONTROL})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in CONTROL and cmd_name not in self.commands:
            control = importlib.import_module("stepline.cli._commands.control")
            self.add_command(getattr(control, cmd_name))
        return self.commands.get(cmd_name)


@click.group(cls=_Runs)
def runs() -> None:
    """List, show, cancel and replay runs; list the runs flow control skipped."""


@runs.command("list")
@function_option("Only runs of this function.")
@_status_option
@click.option(
    "--waiting-for-worker",
    "waiting",
    is_flag=True,
    envvar="STEPLINE_WAITING_FOR_WORKER",
    show_envvar=True,
    help="Only runs that have not ended and whose function no live worker has registered "
    "(they wait for a worker that has it).",
)
@click.option(
    "--all-apps",
    is_flag=True,
    envvar="STEPLINE_ALL_APPS",
    show_envvar=True,
    help="With --app: the runs of every app sharing its database, not only the app's own "
    "(--db alone lists every app's runs).",
)
@limit_option(20, "At most this many runs.")
@cursor_option
@json_flag
@app_option
@db_option
@remote_options
def list_runs(
    function_id: str | None,
    status: str | None,
    waiting: bool,
    all_apps: bool,
    limit: int,
    after: tuple[float, str] | None,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """List runs, newest first: with --app the app's own (--all-apps: every app's), with --db
    alone every app's, with --url the server's app's (--all-apps: every app's). A run whose
    function no live worker has is marked "(no worker)": it waits for one. When more runs
    follow, the last line gives the --cursor of the next page (with --json: each run's
    "cursor"; pass the last one's)."""
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db, read_only=True)
    try:
        query = app.runs(
            function_id=function_id,
            status=status,
            limit=limit + 1,
            waiting_for_worker=waiting,
            all_apps=all_apps or (app_ref is None and url is None),
            after=after,
        )
        found = asyncio.run(query)
    finally:
        app.close()
    more, found = len(found) > limit, found[:limit]
    if as_json:
        print_json([views.run_json(r) for r in found])
        return
    console = make_console()
    if not found:
        console.print("No runs.")
        return
    console.print(_runs_table(found, console.width))
    if more and found[-1].cursor:
        console.print(next_page(found[-1].cursor), style="dim")


@runs.command("search")
@click.argument("query")
@function_option("Only runs of this function.")
@_status_option
@click.option(
    "--scan",
    type=click.IntRange(min=1, max=100_000),
    default=10_000,
    show_default=True,
    envvar="STEPLINE_SCAN",
    show_envvar=True,
    help="Look at most at this many runs (the newest the filters select, below --cursor).",
)
@click.option(
    "--all-apps",
    is_flag=True,
    envvar="STEPLINE_ALL_APPS",
    show_envvar=True,
    help="Search the runs of every app sharing the database (or of the server's database).",
)
@limit_option(20, "At most this many matches.")
@cursor_option
@json_flag
@app_option
@db_option
@remote_options
def search_runs(
    query: str,
    function_id: str | None,
    status: str | None,
    scan: int,
    all_apps: bool,
    limit: int,
    after: tuple[float, str] | None,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """Find runs by payload: QUERY is a CEL expression over `event`, `events`, `output`,
    `error` and `run` (e.g. 'event.data.amount > 100 && run.status == "FAILED"'), evaluated on
    the newest runs (up to --scan), newest first. The last lines say how many runs were
    looked at and give the --cursor that continues below (also when a page found nothing but
    stopped early); with --json, an object with "runs", "next_cursor", "scanned",
    "complete", "failed" and "error"."""
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db, read_only=True)
    try:
        search = app.search_runs(
            query,
            function_id=function_id,
            status=status,
            limit=limit,
            scan=scan,
            after=after,
            with_steps=True,
            all_apps=all_apps or (app_ref is None and url is None),
        )
        found = asyncio.run(search)
    except ExpressionError as exc:
        raise CliUsageError(f"invalid search: {exc}") from None
    finally:
        app.close()
    if as_json:
        print_json(render.search_dict(found))
        return
    console = make_console()
    if found.runs:
        console.print(_runs_table(found.runs, console.width))
    else:
        console.print("No runs match." if found.complete else "No runs match so far.")
    console.print(render.search_summary(found), style="dim")
    if found.next_cursor:
        console.print(next_page(found.next_cursor), style="dim")


def _runs_table(found: list[Run], width: int) -> Table:
    """The runs as rows. On a narrow terminal the least useful columns go first (STEPS, TOOK,
    CREATED); the output column gets the width left, or is left out when that is too little."""
    from rich.table import Table
    from rich.text import Text

    columns: dict[str, list[str]] = {
        "RUN ID": [r.run_id for r in found],
        "FUNCTION": [r.function_id for r in found],
        "STATUS": [_status(r) for r in found],
        "CREATED": [render.short_time(r.created_at) for r in found],
        "TOOK": [render.duration(_took(r)) for r in found],
        "STEPS": [str(len(r.steps)) for r in found],
    }
    widths = {name: max(len(name), *map(len, cells)) for name, cells in columns.items()}
    for optional in ("STEPS", "TOOK", "CREATED"):
        if sum(widths.values()) + 2 * (len(widths) - 1) <= width:
            break
        del columns[optional], widths[optional]
    room = width - sum(widths.values()) - 2 * len(widths)
    table = Table(box=None, header_style="bold dim", pad_edge=False)
    for name in columns:
        table.add_column(
            name, no_wrap=True, justify="right" if name in ("TOOK", "STEPS") else "left"
        )
    if room >= MIN_OUTPUT_WIDTH:
        table.add_column("OUTPUT / ERROR", no_wrap=True, overflow="ellipsis", max_width=room)
    for index, run in enumerate(found):
        cells = [Text(values[index]) for values in columns.values()]
        cells[2] = render.status_text(run.status)
        if run.waiting_for_worker:
            cells[2].append(NO_WORKER, style="yellow")
        if room >= MIN_OUTPUT_WIDTH:
            outcome = render.error_text(run.error) or (
                render.compact_json(run.output, 200) if run.status == "COMPLETED" else ""
            )
            cells.append(Text(outcome, style=render.outcome_style(run)))
        table.add_row(*cells)
    return table


NO_WORKER = " (no worker)"


def _status(run: Run) -> str:
    return run.status + (NO_WORKER if run.waiting_for_worker else "")


def _took(run: Run) -> float | None:
    return (run.ended_at - run.created_at).total_seconds() if run.ended_at else None


@runs.command("show")
@click.argument("run_ref", metavar="RUN_ID")
@json_flag
@app_option
@db_option
@remote_options
def show_run(
    run_ref: str,
    as_json: bool,
    app_ref: str | None,
    db: str | None,
    url: str | None,
    token: str | None,
) -> None:
    """Show a run: its outcome, its history as a timeline, and its steps.

    RUN_ID may be the full id or its last characters, as `stepline dev` prints them.
    """
    app = open_remote(url, token, app_ref, db) if url else open_app(app_ref, db, read_only=True)
    try:
        run, history = asyncio.run(_load(app, run_ref))
    finally:
        app.close()
    if as_json:
        print_json({**views.run_json(run), "history": [views.history_json(h) for h in history]})
        return
    from rich.text import Text

    console = make_console()
    console.print(_header(run, history))
    console.print()
    console.print(Text("History", style="bold"))
    console.print(_timeline(run, history))
    if run.steps:
        console.print()
        console.print(Text("Steps", style="bold"))
        console.print(_steps_table(run))


async def _load(app: App | RemoteApp, ref: str) -> tuple[Run, list[HistoryEntry]]:
    run = await find_run(app, ref)
    return run, await app.history(run.run_id)


def _header(run: Run, history: list[HistoryEntry]) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("run", Text(run.run_id, style="bold"))
    function = Text(run.function_id, style="bold")
    if run.app_id:
        function.append(f"  (app {run.app_id})", style="dim")
    grid.add_row("function", function)
    grid.add_row("status", render.status_text(run.status))
    if run.waiting_for_worker:
        grid.add_row(
            "waiting",
            Text(
                f"for a worker: no live worker has function {run.function_id!r}"
                + (f" of app {run.app_id!r}" if run.app_id else "")
                + " (the run starts when one does)",
                style="yellow",
            ),
        )
    if run.worker_id is not None:
        grid.add_row("worker", run.worker_id)
    grid.add_row("events", ", ".join(run.event_ids))
    original = render.replayed_from(history)
    if original is not None:
        grid.add_row("replay of", original)
    grid.add_row("created", render.local_time(run.created_at))
    if run.started_at is not None:
        grid.add_row("started", render.offset(run.started_at, run.created_at))
    if run.ended_at is not None:
        took = render.duration((run.ended_at - run.created_at).total_seconds())
        grid.add_row("ended", f"{render.offset(run.ended_at, run.created_at)} (took {took})")
    if run.attempt:
        grid.add_row("attempt", str(run.attempt + 1))
    parts: list[Any] = [grid]
    if run.status == "COMPLETED":
        grid.add_row("output", Text(render.pretty_json(run.output)))
    if run.status == "CANCELLED" and run.error and run.error.get("name") == "Cancelled":
        grid.add_row("reason", Text(str(run.error.get("message", "")), style="yellow"))
    elif run.error:
        grid.add_row("error", Text(render.error_text(run.error), style="red"))
        stack = run.error.get("stack")
        if stack:
            parts.append(Text(str(stack).rstrip(), style="dim"))
    return Group(*parts)


def _timeline(run: Run, history: list[HistoryEntry]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(justify="right", style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(style="magenta", no_wrap=True)
    table.add_column(justify="right", style="dim", no_wrap=True)
    table.add_column(overflow="fold", ratio=1)
    for entry in history:
        details = render.entry_details(entry)
        table.add_row(
            render.offset(entry.at, run.created_at),
            Text(entry.kind, style=render.kind_style(entry.kind)),
            Text(entry.step_id or ""),
            render.attempt_label(entry),
            render.duration(entry.duration),
            Text(details, style=render.details_style(entry.kind)),
        )
    return table


def _steps_table(run: Run) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold dim", pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("STEP", style="bold", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right")
    table.add_column("OUTPUT / ERROR", overflow="fold", ratio=1)
    for index, step in enumerate(run.steps, start=1):
        shown = step.status == "COMPLETED" and (step.kind == "run" or step.output is not None)
        outcome = render.error_text(step.error) or (
            render.compact_json(step.output, 300) if shown else ""
        )
        if step.status == "RUNNING" and step.started_at is not None:
            since = render.offset(step.started_at, run.created_at)
            outcome = f"attempt {step.attempts + 1} executing since {since}"
        table.add_row(
            str(index),
            Text(step.id),
            step.kind,
            render.status_text(step.status),
            str(step.attempts),
            Text(outcome, style="red" if step.error else ""),
        )
    return table
