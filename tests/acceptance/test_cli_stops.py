"""Small command-line edges (issue 6 review item 6): how ``stepline dev`` ends on a second
SIGINT, ``stepline worker`` on ``memory://``, and read-only commands on an empty file."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import TIMEOUT, Cli, cli_in, wait_until

from stepline.cli import cli as stepline_cli

HELD_APP = '''
"""A function whose step runs until the file "release" exists."""

import time
from pathlib import Path

from stepline import App, SyncContext, TriggerEvent

app = App("held")
HERE = Path(__file__).parent


def held() -> str:
    (HERE / "started").touch()
    while not (HERE / "release").exists():
        time.sleep(0.01)  # real time: a step that runs until the test releases it
    return "released"


@app.function(id="held", trigger=TriggerEvent("go"))
def run_held(ctx: SyncContext) -> str:
    return ctx.step.run("held", held)
'''


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    (tmp_path / "heldapp.py").write_text(HELD_APP)
    yield from cli_in(tmp_path)


def test_a_second_sigint_during_the_graceful_stop_ends_dev_without_aborted(
    cli: Cli, tmp_path: Path
) -> None:
    # issue 6 review item 6: "Aborted!" (click's KeyboardInterrupt) and exit 1 after SIGINT
    log = tmp_path / "dev.log"
    dev = cli.start("dev", "heldapp:app", "--db", cli.db, "--send", "go", output=log)
    wait_until(lambda: (tmp_path / "started").exists(), "the step", process=dev, output=log)
    dev.send_signal(signal.SIGINT)
    wait_until(lambda: "stopping once" in log.read_text(), "the stop", process=dev, output=log)
    dev.send_signal(signal.SIGINT)  # the second one: stop at once
    wait_until(lambda: "stopped at once" in log.read_text(), "the abort", process=dev, output=log)
    (tmp_path / "release").touch()  # the step's thread ends: the process can exit
    assert dev.wait(timeout=TIMEOUT) == 130
    text = log.read_text()
    assert "Aborted!" not in text and "Traceback" not in text


def test_worker_refuses_memory() -> None:
    # issue 6 review item 6: a worker on memory:// receives no events (only its own process
    # could send them): refused like the other commands that end with the process
    result = CliRunner().invoke(
        stepline_cli, ["worker", "examples.shop:app", "--db", "memory://"], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "memory://" in line and "stepline dev" in line


def test_runs_list_on_an_empty_file_creates_no_tables(tmp_path: Path) -> None:
    # issue 6 review item 6: a read-only command wrote the schema into an empty SQLite file
    path = tmp_path / "empty.db"
    path.touch()
    result = CliRunner().invoke(
        stepline_cli, ["runs", "list", "--db", str(path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "No runs." in result.output
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    conn.close()


def test_functions_list_on_an_empty_file_creates_no_tables(tmp_path: Path) -> None:
    # issue 6 ("which database"): listing is a read; it must not write the schema into a file
    path = tmp_path / "empty.db"
    path.touch()
    result = CliRunner().invoke(
        stepline_cli, ["functions", "list", "--db", str(path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    conn.close()
