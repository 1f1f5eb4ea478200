"""The ``stepline`` command line: a thin shell over the library.

Every option has a ``STEPLINE_*`` environment fallback. Problems the user can fix (a bad
``MODULE:APP``, bad JSON, an unknown run) print one line on stderr and exit non-zero: 2 for a
command line that cannot work as given (a bad option value, an invalid ``--if`` expression, an
unknown step), 1 for the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import click

from stepline import __version__
from stepline.errors import SteplineError

__all__ = ["cli", "main"]


# each command's module, imported when the command is run (`stepline runs list` does not load
# the HTTP server, the Inngest driver or httpx: a third of the start-up time); `stepline --help`
# lists the commands with these short helps without importing any (the SDK with them: 0.35 s ->
# 0.04 s CPU); tests/acceptance/test_cli_startup.py checks they are each command's own
_COMMANDS = {
    "apps": "The apps registered on a database; Inngest SDK apps (served over HTTP).",
    "db": "The database: schema migrations and a health check.",
    "dev": "Run MODULE:APP's functions with a live log of every run, step and retry, and serve "
    "the dashboard, the event API and the REST API on http://127.0.0.1:8288.",
    "events": "List and show the events received (by `send`, the event API, steps, the engine).",
    "functions": "List an app's functions; pause and resume them.",
    "runs": "List, show, cancel and replay runs; list the runs flow control skipped.",
    "send": "Send the event NAME; print its id, the runs it started and the functions of other "
    "apps it was handed to.",
    "server": "Serve MODULE:APP over HTTP (events, REST API, dashboard) with a worker, until "
    "SIGINT/SIGTERM.",
    "worker": "Execute MODULE:APP's runs until SIGINT/SIGTERM (in-flight steps finish first).",
}


class _Root(click.Group):
    """Turns library errors (a bad database URL, an invalid event) into one-line CLI errors;
    imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        found = self.commands.get(cmd_name)
        if found is None:
            found = _load(cmd_name)
            self.add_command(found)
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(n, click.Command(n, help=_COMMANDS[n]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from stepline.cli._common import CliError, with_db  # not for --help: it imports the SDK

        try:
            return super().invoke(ctx)
        except SteplineError as exc:
            raise CliError(with_db(ctx, str(exc))) from exc
        except CliError as exc:  # once a command has chosen its database, its errors name it
            named = with_db(ctx, exc.message)
            if named == exc.message:
                raise
            raise type(exc)(named) from exc.__cause__


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="stepline")
def cli() -> None:
    """Stepline: durable functions for Python.

    Start with `stepline dev MODULE:APP --send EVENT --data JSON`.
    """


def _load(name: str) -> click.Command:
    module = importlib.import_module(f"stepline.cli._commands.{name}")
    command: click.Command = getattr(module, name)
    return command


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``stepline`` command (``argv`` defaults to ``sys.argv[1:]``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="stepline")
