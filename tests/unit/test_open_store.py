"""Database URLs: what opens which store, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline import App, ConfigError, Event, EventError
from stepline.store import MemoryStore, SQLiteStore, open_store
from stepline.store.records import RunFilter


def test_urls_open_the_right_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    relative = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == tmp_path / "a.db"
    plain = open_store(str(tmp_path / "b.db"))
    assert isinstance(plain, SQLiteStore)
    monkeypatch.setenv("STEPLINE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    from_env = open_store()
    assert isinstance(from_env, SQLiteStore)
    assert from_env.path == tmp_path / "env.db"


def test_postgresql_urls_open_the_postgres_store(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepline.store.postgres import PostgresStore

    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        store.close()
    monkeypatch.setenv("STEPLINE_DB", pg_url)
    app = App("pg-app")
    try:
        app.send(Event(name="nobody/listens"))
        assert isinstance(app.engine.store, PostgresStore)
    finally:
        app.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unknown database URL 'mysql://localhost/db'"),
    ],
)
def test_unsupported_urls_say_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_bad_events_are_refused_before_anything_is_stored(tmp_path: Path) -> None:
    app = App("edge", db=f"sqlite:///{tmp_path / 'e.db'}")
    try:
        with pytest.raises(EventError, match="non-empty string"):
            app.send(Event(name=""))
        with pytest.raises(EventError, match="data must be a dict"):
            app.send(Event(name="x", data=[1, 2]))  # type: ignore[arg-type]
        with pytest.raises(EventError, match=r"expected a stepline\.Event"):
            app.send({"name": "x"})  # type: ignore[arg-type]
        assert app.engine.store.list_runs(RunFilter()) == []
    finally:
        app.close()
