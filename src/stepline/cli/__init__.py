"""The ``stepline`` command line: a thin shell over the library.

Every option has a ``STEPLINE_*`` environment fallback. Problems the user can fix (a bad
``MODULE:APP``, bad JSON, an unknown run) print one line on stderr and exit non-zero: 2 for a
command line that cannot work as given (a bad option value, an invalid ``--if`` expression, an
unknown step), 1 for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from stepline import __version__
from stepline.cli._commands.apps import apps
from stepline.cli._commands.control import cancel, purge, replay, skipped
from stepline.cli._commands.db import db
from stepline.cli._commands.dev import dev
from stepline.cli._commands.events import events
from stepline.cli._commands.functions import functions
from stepline.cli._commands.runs import runs
from stepline.cli._commands.send import send
from stepline.cli._commands.server import server
from stepline.cli._commands.worker import worker
from stepline.cli._common import CliError, with_db
from stepline.errors import SteplineError

__all__ = ["cli", "main"]


class _Root(click.Group):
    """Turns library errors (a bad database URL, an invalid event) into one-line CLI errors."""

    def invoke(self, ctx: click.Context) -> Any:
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


cli.add_command(dev)
cli.add_command(worker)
cli.add_command(server)
cli.add_command(send)
cli.add_command(runs)
cli.add_command(functions)
cli.add_command(events)
cli.add_command(apps)
cli.add_command(db)
runs.add_command(cancel)
runs.add_command(replay)
runs.add_command(skipped)
runs.add_command(purge)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``stepline`` command (``argv`` defaults to ``sys.argv[1:]``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="stepline")
