"""What every command shares: loading ``MODULE:APP``, choosing the database, options, errors."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click
from click.core import ParameterSource

from stepline._cursor import decode_cursor, encode_cursor
from stepline._urls import shown_url
from stepline.durations import parse_duration
from stepline.errors import DurationError
from stepline.sdk._location import is_stepline_file, shown_path
from stepline.sdk.app import App
from stepline.sdk.run import Run
from stepline.store import DEFAULT_DB_PATH

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A problem the user can fix: printed as one line on stderr, no traceback; exit code 1."""


class CliUsageError(CliError):
    """A command line that cannot work as given (exit code 2, as click's usage errors)."""

    exit_code = 2


if TYPE_CHECKING:  # click >= 8.2 types ParamType as a generic; older versions do not subscript
    _ParamType = click.ParamType[dict[str, Any], Any]
else:
    _ParamType = click.ParamType


class JsonObject(_ParamType):
    """A JSON object given on the command line (``--data '{"orderId": "o-1"}'``). A bad value
    is a usage error (exit code 2) that says what is wrong and where."""

    name = "JSON"
    envvar_list_splitter = "\n"  # several values in one variable: one per line

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dict):
            return value
        what = param.opts[0] if param is not None and param.opts else "the value"
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CliUsageError(
                f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
                f"{value!r}"
            ) from None
        if not isinstance(data, dict):
            raise CliUsageError(
                f"{what} must be a JSON object such as '{{\"key\": 1}}', not a JSON "
                f"{_json_kind(data)}: {value!r}"
            )
        return data


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


JSON_OBJECT = JsonObject()


if TYPE_CHECKING:
    _TimeType = click.ParamType[datetime, Any]
else:
    _TimeType = click.ParamType


class PointInTime(_TimeType):
    """A time on the command line: ISO 8601 (``2024-05-01T12:00:00+02:00``, ``...Z``; without an
    offset, local time) or a duration ago (``90m``, ``2d``). A bad value is a usage error."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        what = param.opts[0] if param is not None and param.opts else "the value"
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo is not None else moment.astimezone()
        try:
            ago = parse_duration(text)
        except DurationError:
            raise CliUsageError(
                f"{what} must be an ISO 8601 time (2024-05-01T12:00:00+02:00, or local time "
                f"without an offset) or a duration ago (90m, 2d), not {value!r}"
            ) from None
        return datetime.now().astimezone() - ago


POINT_IN_TIME = PointInTime()


PIPE_WIDTH = 200


def make_console() -> Console:
    """A console on stdout. Piped output is not cut at 80 columns (``COLUMNS`` still rules)."""
    from rich.console import Console  # not for --json: rich is a fifth of a read command's start

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def print_json(data: Any) -> None:
    """``data`` as JSON indented by 2 on stdout: highlighted by rich on a terminal, else the same
    text written without loading rich (tests/acceptance/test_cli_startup.py)."""
    if sys.stdout.isatty():
        make_console().print_json(data=data)
    else:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# -- options ---------------------------------------------------------------------------------------
def app_argument(fn: F) -> F:
    """The ``MODULE:APP`` argument (``STEPLINE_APP`` when omitted)."""
    return click.argument("app_ref", metavar="MODULE:APP", envvar="STEPLINE_APP")(fn)


def app_option(fn: F) -> F:
    """``--app MODULE:APP`` for commands that can also work from ``--db`` alone."""
    return click.option(
        "--app",
        "app_ref",
        metavar="MODULE:APP",
        envvar="STEPLINE_APP",
        show_envvar=True,
        help="The app, as MODULE:APP (e.g. examples.shop:app).",
    )(fn)


def db_option(fn: F) -> F:
    """``--db URL``; from ``STEPLINE_DB`` only when the app itself names no database. With it
    ``--verbose``: name the database used, on stderr."""
    fn = click.option(
        "--verbose",
        "-v",
        is_flag=True,
        expose_value=False,
        envvar="STEPLINE_VERBOSE",
        show_envvar=True,
        callback=_set_verbose,
        help="Say which database is used and where that choice came from (on stderr).",
    )(fn)
    return click.option(
        "--db",
        metavar="URL",
        envvar="STEPLINE_DB",
        show_envvar=True,
        help="Database URL (sqlite:///path.db, a file path, postgresql://..., memory://). "
        "Overrides the app's db; STEPLINE_DB applies when the app sets none. Default: "
        "./.stepline/stepline.db.",
    )(fn)


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[VERBOSE_KEY] = value
    return value


def function_option(help: str) -> Callable[[F], F]:
    """``--function ID`` (``STEPLINE_FUNCTION``)."""
    return click.option(
        "--function",
        "function_id",
        metavar="ID",
        envvar="STEPLINE_FUNCTION",
        show_envvar=True,
        help=help,
    )


def limit_option(default: int, help: str) -> Callable[[F], F]:
    """``--limit N`` (``STEPLINE_LIMIT``)."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        envvar="STEPLINE_LIMIT",
        show_envvar=True,
        help=help,
    )


def concurrency_option(fn: F, *aliases: str) -> F:
    """``--concurrency N`` (``STEPLINE_CONCURRENCY``): runs a worker executes at once."""
    return click.option(
        "--concurrency",
        *aliases,
        "concurrency",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        envvar="STEPLINE_CONCURRENCY",
        show_envvar=True,
        help="Runs executed at once by the worker.",
    )(fn)


def cursor_option(fn: F) -> F:
    """``--cursor CURSOR`` (``STEPLINE_CURSOR``): start below a previous page; passed on as
    ``after`` (the decoded position), a usage error for a text no page gave."""

    def decoded(ctx: click.Context, param: click.Parameter, text: str | None) -> Any:
        if not text:
            return None
        try:
            return decode_cursor(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        "--cursor",
        "after",
        metavar="CURSOR",
        envvar="STEPLINE_CURSOR",
        show_envvar=True,
        callback=decoded,
        help="Continue below a previous page: the cursor its last line (or its JSON) gave.",
    )(fn)


def next_page(position: tuple[float, str]) -> str:
    """The line that tells how to get the next page."""
    return f"More: --cursor {encode_cursor(position)}"


def json_flag(fn: F) -> F:
    """``--json``: machine-readable output."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        envvar="STEPLINE_JSON",
        show_envvar=True,
        help="Print JSON instead of tables.",
    )(fn)


# -- loading the app -------------------------------------------------------------------------------
def load_app(ref: str) -> App:
    """Import ``MODULE:APP`` (the current directory is importable) and return the ``App``.

    Raises ``CliError`` naming the problem: a malformed reference (exit code 2), a module that
    cannot be imported or raised while importing, a missing attribute, or an object that is not
    an ``App``.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise CliUsageError(f"{ref!r} is not MODULE:APP (for example examples.shop:app)")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise CliError(
                f"cannot import {module_name!r}: no module named {exc.name!r} (searched from {cwd})"
            ) from None
        raise CliError(f"cannot import {module_name!r}: {_where(exc)}{exc}") from None
    except Exception as exc:
        message = str(exc)
        location = getattr(exc, "location", None)
        if location is not None:  # a definition error that names the user's line itself
            message = message.removesuffix(f" (at {location})")
        raise CliError(
            f"error while importing {module_name!r}: {_where(exc)}{type(exc).__name__}: {message}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, App):
        raise CliError(f"{ref!r} is a {type(obj).__name__}, not a stepline.App")
    return obj


def _where(exc: BaseException) -> str:
    """``path:line: `` of the innermost frame of user code (not importlib's, not Stepline's)."""
    if isinstance(exc, SyntaxError):
        return ""
    location = getattr(exc, "location", None)
    if isinstance(location, str):
        return f"{location}: "
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename and not is_stepline_file(f.filename)
    ]
    if not frames:
        return ""
    return f"{shown_path(frames[-1].filename)}:{frames[-1].lineno}: "


def use_db(app: App, db: str | None, *, memory_ok: bool = True) -> None:
    """Point ``app`` at ``--db`` (before its engine opens). A value that came from
    ``STEPLINE_DB`` does not override a database the app names itself, as in the library.
    Then ``note_db``."""
    source = click.get_current_context().get_parameter_source("db")
    if db is not None and not (source is ParameterSource.ENVIRONMENT and app.db is not None):
        app.db = db
        app.close()  # an engine opened while importing the app is reopened on the new database
        note_db(app, "STEPLINE_DB" if source is ParameterSource.ENVIRONMENT else "--db", memory_ok)
    elif app.db is not None:
        note_db(app, f"App({app.id!r}, db=...)", memory_ok)
    elif os.environ.get("STEPLINE_DB"):
        note_db(app, "STEPLINE_DB", memory_ok)
    else:
        note_db(app, "the default", memory_ok)


DB_KEY = "stepline.db"  # click's ctx.meta: the database the command works on, for its errors
VERBOSE_KEY = "stepline.verbose"


def note_db(app: App, source: str, memory_ok: bool) -> None:
    """Remember the app's database for the command's errors (``with_db``), say it with
    ``--verbose``, and refuse ``memory://`` for a command whose data would end with it."""
    url = db_label(app)
    ctx = click.get_current_context()
    if url.startswith("memory:") and not memory_ok:
        raise CliUsageError(
            f"{ctx.command_path}: memory:// keeps nothing once the command ends; give a "
            "database file (--db sqlite:///path.db or STEPLINE_DB)"
        )
    path = sqlite_path(url)
    shown = str(path.resolve()) if path is not None else shown_url(url)
    ctx.meta[DB_KEY] = (shown, {shown, url, str(path)} if path is not None else {shown, url})
    if ctx.meta.get(VERBOSE_KEY):
        click.echo(f"stepline: database {shown} (from {source})", err=True)


def with_db(ctx: click.Context, message: str) -> str:
    """An error message naming the command's database (once it is known)."""
    known: tuple[str, set[str]] | None = ctx.meta.get(DB_KEY)
    if known is None:
        return message
    shown, names = known
    if any(name in message for name in names):  # the message names it already
        return message
    return f"{message} (database {shown})"


def warn(message: str) -> None:
    """A warning on stderr: the command did its work, but maybe not what was meant."""
    click.echo(f"Warning: {message}", err=True)


def db_label(app: App) -> str:
    """The database the app uses, for humans."""
    return app.db or os.environ.get("STEPLINE_DB") or str(DEFAULT_DB_PATH)


def open_app(
    app_ref: str | None, db: str | None, *, create: bool = False, read_only: bool = False
) -> App:
    """The app for commands on an existing database: ``--app`` (with ``--db`` overriding its
    database), else a bare app (no functions) on ``--db``, else the default database if it
    exists. Creates no database unless ``create`` (a SQLite file a typo names would be left
    behind). ``memory://`` is refused: it would end with the command. ``read_only``: the
    command only reads, so an empty SQLite file (0 bytes, no schema yet) is read as the empty
    database it is, from memory, without writing Stepline's schema into it."""
    if app_ref is not None:
        app = load_app(app_ref)
        use_db(app, db, memory_ok=False)
    elif db is not None:
        app = App("cli", db=db)
        env = click.get_current_context().get_parameter_source("db")
        note_db(app, "STEPLINE_DB" if env is ParameterSource.ENVIRONMENT else "--db", False)
    elif DEFAULT_DB_PATH.exists():
        app = App("cli")
        note_db(app, "the default", False)
    else:
        raise CliUsageError(
            f"no database at {DEFAULT_DB_PATH}: pass --app MODULE:APP or --db URL "
            "(or set STEPLINE_APP / STEPLINE_DB)"
        )
    path = sqlite_path(db_label(app))
    if path is not None and not path.exists() and not create:
        raise CliError(f"no database at {path}")
    if read_only and path is not None and path.exists() and path.stat().st_size == 0:
        app.db = "memory://"  # nothing to read: the same answers, and the file stays as it is
        app.close()
    return app


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (None for other kinds of database)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///") or DEFAULT_DB_PATH)
    if url.startswith("memory:") or "://" in url:
        return None
    return Path(url)


# -- finding a run ---------------------------------------------------------------------------------
RUN_SEARCH_LIMIT = 1000  # the newest runs searched for a run id's last characters
RUN_ID_LENGTH = 26
MIN_RUN_REF = 4


class RunSource(Protocol):
    """Where runs are read: an ``App`` on a database, or a server (``_remote.RemoteApp``)."""

    async def get_run(self, run_id: str) -> Run | None: ...

    async def runs(
        self, *, limit: int = ..., with_steps: bool = ..., all_apps: bool = ...
    ) -> list[Run]: ...


async def find_run(app: RunSource, ref: str) -> Run:
    """The run ``ref`` names: a full run id, or its last characters (at least ``MIN_RUN_REF``,
    as ``stepline dev`` prints them) among the newest ``RUN_SEARCH_LIMIT`` runs. ``CliError``
    if none or several match, saying how many characters would do and how far back they were
    searched."""
    run = await app.get_run(ref)
    if run is not None:
        return run
    whole = f"the full {RUN_ID_LENGTH}-character id"
    if len(ref) >= RUN_ID_LENGTH:
        raise CliError(f"no run {ref!r}")
    if len(ref) < MIN_RUN_REF:
        raise CliError(
            f"run id {ref!r} is too short: give at least its last {MIN_RUN_REF} characters "
            f"(searched among the newest {RUN_SEARCH_LIMIT} runs) or {whole}"
        )
    tail = ref.upper()
    found = await app.runs(limit=RUN_SEARCH_LIMIT, with_steps=False, all_apps=True)
    matches = [r.run_id for r in found if r.run_id.endswith(tail)]
    if not matches:
        raise CliError(
            f"no run whose id ends in {ref!r} among the newest {RUN_SEARCH_LIMIT} runs (for an "
            f"older run give {whole})"
        )
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise CliError(
            f"run id {ref!r} matches {len(matches)} of the newest {RUN_SEARCH_LIMIT} runs "
            f"({shown}): give at least {_distinct_tail(matches)} characters"
        )
    run = await app.get_run(matches[0])
    if run is None:  # purged since
        raise CliError(f"no run {ref!r}")
    return run


def _distinct_tail(run_ids: list[str]) -> int:
    """How many last characters tell these run ids apart."""
    longest = 0
    for left, right in itertools.pairwise(sorted(r[::-1] for r in run_ids)):
        common = next((i for i, (x, y) in enumerate(zip(left, right, strict=False)) if x != y), 0)
        longest = max(longest, common)
    return min(longest + 1, RUN_ID_LENGTH)


def paused_functions(app: App, *, all_apps: bool = False) -> set[str]:
    """The ids of the app's paused functions; ``all_apps``: of those paused in any app of its
    database (the commands given --db alone, which act on every app)."""
    return app.paused_functions(all_apps=all_apps)
