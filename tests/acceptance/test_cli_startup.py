"""What starting the ``stepline`` command and importing the package load: each CLI process (the
suite starts a few hundred) pays for every module it imports, so ``import stepline``, ``--help``
and the read commands must not load what they do not use (the SDK, the server, the Inngest
driver, the other store backends). Checked in a fresh interpreter through ``sys.modules``."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from rich.console import Console

import stepline
from stepline.cli import _COMMANDS, _load
from stepline.cli._common import print_json

# loaded by no command that does not serve HTTP or talk to PostgreSQL / an SDK app
NETWORK_STACK = ("httpx", "starlette", "uvicorn", "graphql", "psycopg", "stepline.server.app")

_PROBE = """
import json, sys
args = json.loads(sys.argv[1])
if args and args[0] == "-c":
    exec(args[1])
else:
    from stepline.cli import main
    try:
        main(args)
    except SystemExit:
        pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def loaded_by(*args: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter has loaded after ``stepline ARGS`` (or ``-c CODE``)."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    _, _, listed = result.stderr.rpartition("\nMODULES ")
    assert listed, result.stderr
    return set(json.loads(listed))


def migrated(tmp_path: Path) -> str:
    """A fresh SQLite database (the read commands refuse a missing one)."""
    db = str(tmp_path / "stepline.db")
    migrate = [sys.executable, "-m", "stepline.cli", "db", "migrate", "up", "--db", db]
    subprocess.run(migrate, cwd=tmp_path, capture_output=True, check=True)
    return db


def heavy(modules: set[str], *names: str) -> list[str]:
    """Those of ``modules`` that are one of ``names`` or inside one."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_import_stepline_loads_no_sdk(tmp_path: Path) -> None:
    modules = loaded_by("-c", "import stepline", cwd=tmp_path)
    assert heavy(modules, "asyncio", "stepline.sdk", "stepline.store", "stepline.engine") == []


def test_help_lists_commands_without_importing_them(tmp_path: Path) -> None:
    modules = loaded_by("--help", cwd=tmp_path)
    assert heavy(modules, "asyncio", "rich", "stepline.sdk", "stepline.cli._commands") == []


def test_runs_list_loads_one_backend_and_no_network_stack(tmp_path: Path) -> None:
    db = migrated(tmp_path)
    modules = loaded_by("runs", "list", "--db", db, "--json", cwd=tmp_path)
    assert "stepline.store.sqlite" in modules  # the command did run
    unused = ("stepline.store.memory", "stepline.engine.worker", "stepline.drivers", "rich")
    assert heavy(modules, *NETWORK_STACK, *unused, "stepline.cli._commands.control") == []


@pytest.mark.parametrize("args", [("runs", "search", "run.status == 'QUEUED'"), ("events", "list")])
def test_json_output_loads_no_rich(tmp_path: Path, args: tuple[str, ...]) -> None:
    modules = loaded_by(*args, "--db", migrated(tmp_path), "--json", cwd=tmp_path)
    assert "stepline.store.sqlite" in modules
    assert heavy(modules, "rich") == []


def test_plain_json_is_what_rich_prints() -> None:
    data = [{"b": "é ✓ \u2028 \x00\t", "a": [1, 2.5, None, True, {}, []], "c": {"d": "x" * 300}}]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_json(data)
    by_rich = io.StringIO()
    Console(file=by_rich, width=80, highlight=False).print_json(data=data)
    assert printed.getvalue() == by_rich.getvalue()


def test_send_loads_no_network_stack(tmp_path: Path) -> None:
    db = migrated(tmp_path)
    modules = loaded_by("send", "demo/started", "--db", db, cwd=tmp_path)
    assert "stepline.store.sqlite" in modules
    assert heavy(modules, *NETWORK_STACK, "stepline.store.memory", "stepline.engine.worker") == []


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_static_short_help_is_the_commands_own(name: str) -> None:
    # `stepline --help` prints _COMMANDS without importing the commands: when a command's
    # docstring changes, copy its first sentence into _COMMANDS (src/stepline/cli/__init__.py)
    assert _COMMANDS[name] == _load(name).get_short_help_str(limit=10_000)


def test_help_output_is_the_loaded_commands_help() -> None:
    from stepline.cli import cli

    settings = cli.context_settings  # -h, --help (a bare Context would have --help alone)
    static = cli.get_help(click.Context(cli, info_name="stepline", **settings))
    loaded = click.Group(
        "stepline",
        commands={name: _load(name) for name in _COMMANDS},
        help=cli.help,
        params=cli.params,
        context_settings=cli.context_settings,
    )
    assert static == loaded.get_help(click.Context(loaded, info_name="stepline", **settings))


def test_every_public_name_imports() -> None:
    for name in stepline.__all__:
        assert getattr(stepline, name) is not None, name
    assert set(stepline.__all__) <= set(dir(stepline))
    with pytest.raises(AttributeError):
        stepline.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
