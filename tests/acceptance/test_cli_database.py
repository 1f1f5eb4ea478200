"""What the command line says about the database it works on: short run ids, which database,
files that are not Stepline's, ``memory://``, and what ``stepline send`` did. In-process
(click's runner) on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import stepline
from stepline import App, Context, Event
from stepline.cli import cli

FULL_ID = 26


def invoke(*args: str) -> Result:
    """Run one command in this process; stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A database URL in the test's folder."""
    return f"sqlite:///{tmp_path / 'x.db'}"


def queue_runs(db: str, n: int) -> list[str]:
    """Queue ``n`` runs (no worker executes them); their ids."""
    app = App("ids", db=db)

    @app.function(id="noop", trigger=stepline.TriggerEvent("noop/go"))
    async def noop(ctx: Context) -> None:
        return None

    try:
        ids = app.send([Event(name="noop/go") for _ in range(n)])
        return [r.run_id for i in ids for r in _runs_of(app, i)]
    finally:
        app.close()


def _runs_of(app: App, event_id: str) -> list[stepline.Run]:
    import asyncio

    return asyncio.run(app.runs(event_id=event_id))


def rename_runs(db: str, renames: dict[str, str]) -> None:
    """Give runs chosen ids (in the runs table, which is what ``find_run`` searches)."""
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        for old, new in renames.items():
            conn.execute("UPDATE runs SET run_id = ? WHERE run_id = ?", (new, old))
    conn.close()


# -- short run ids --------------------------------------------------------------------------------
def test_a_short_run_id_error_says_how_many_characters_and_how_far_back(db: str) -> None:
    # issue 6 "Short run ids": the error says how many characters are needed and how far back
    # they are searched
    first, second = queue_runs(db, 2)
    a, b = "01AAAAAAAAAAAAAAAAAAQXY123", "01AAAAAAAAAAAAAAAAAARXY123"
    rename_runs(db, {first: a, second: b})

    too_short = invoke("runs", "show", "123", "--db", db)
    assert too_short.exit_code == 1
    assert "at least its last 4 characters" in too_short.stderr
    assert f"full {FULL_ID}-character id" in too_short.stderr

    ambiguous = invoke("runs", "show", "xy123", "--db", db)
    assert ambiguous.exit_code == 1
    assert "matches 2 of the newest 1000 runs" in ambiguous.stderr
    assert "give at least 6 characters" in ambiguous.stderr  # QXY123 / RXY123

    unknown = invoke("runs", "show", "ZZZZZ", "--db", db)
    assert unknown.exit_code == 1
    assert "no run whose id ends in 'ZZZZZ' among the newest 1000 runs" in unknown.stderr
    assert f"full {FULL_ID}-character id" in unknown.stderr

    found = invoke("runs", "show", "qxy123", "--db", db, "--json")
    assert found.exit_code == 0, found.stderr
    assert a in found.stdout
