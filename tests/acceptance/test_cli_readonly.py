"""A database Stepline cannot write to (read-only file, unusable tables): the public API raises a
named ``StoreError`` naming the database, the command line prints one line, a worker exits
non-zero; never a raw ``sqlite3`` exception or a traceback. In-process, on real SQLite files
made read-only for Stepline's connections (``mode=ro``: root ignores file permissions)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import stepline
from stepline import App, Event
from stepline.cli import cli
from stepline.store.records import RunFilter
from stepline.store.sqlite.store import SQLiteStore

_connect = sqlite3.connect


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A Stepline database used once (schema, -wal and -shm exist), then read-only."""
    db = tmp_path / "x.db"
    app = App("ro", db=f"sqlite:///{db}")
    try:
        app.send(Event(name="nothing/listens"))
    finally:
        app.close()
    return db


@pytest.fixture
def readonly(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stepline's connections to ``path`` open it read-only (``attempt to write a readonly
    database`` on every write, as for a file under ``chattr +i``)."""

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if Path(database) == path:
            return _connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)
        return _connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    return path


def test_send_to_a_readonly_database_raises_a_named_store_error(readonly: Path) -> None:
    # issue 6 review item 1: no raw sqlite3 exception reaches a user of the public API
    app = App("ro", db=f"sqlite:///{readonly}")
    try:
        with pytest.raises(stepline.StoreError) as caught:
            app.send(Event(name="nothing/listens"))
    finally:
        app.close()
    assert not isinstance(caught.value, stepline.StoreUnavailable)  # not transient
    assert "readonly" in str(caught.value)
    assert str(readonly) in str(caught.value)


def test_send_on_the_command_line_is_one_line(readonly: Path) -> None:
    # issue 6 review item 1: `stepline send` printed a 59-line sqlite3 traceback
    result = invoke("send", "x/y", "--app", "examples.shop:app", "--db", str(readonly))
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    assert "readonly" in line
    assert f"(database {readonly})" in line or str(readonly) in line


def test_a_worker_on_a_readonly_database_exits_non_zero_with_one_line(readonly: Path) -> None:
    # issue 6 review item 1: `stepline worker` died with the same traceback
    result = invoke("worker", "examples.shop:app", "--db", str(readonly))
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("Error: "), lines
    assert "readonly" in lines[-1]
    assert str(readonly) in lines[-1]


def test_direct_store_reads_raise_store_error(path: Path) -> None:
    # issue 6 review item 1: the store's reads translate errors as its writes do
    with _connect(path) as conn:
        conn.execute("DROP TABLE runs")
    conn.close()
    store = SQLiteStore(path)
    try:
        with pytest.raises(stepline.StoreError) as caught:
            store.list_runs(RunFilter())
        assert str(path) in str(caught.value)
        with pytest.raises(stepline.StoreError):
            store.get_run("01NOSUCHRUN0000000000000000")
    finally:
        store.close()


def test_replay_of_reads_the_store_through_the_same_translation(path: Path) -> None:
    # issue 6 review item 1: Engine.replay_of reads the store directly (get_events)
    app = App("ro", db=f"sqlite:///{path}")
    try:
        engine = app.engine
        with _connect(path) as conn:
            conn.execute("DROP TABLE events")
        conn.close()

        class Original:
            app_id, function_id, event_ids = "ro", "f", ["01NOSUCHEVENT0000000000000"]

        with pytest.raises(stepline.StoreError) as caught:
            engine.replay_of(Original(), engine.clock.now())
        assert "no such table" in str(caught.value) and str(path) in str(caught.value)
    finally:
        app.close()
