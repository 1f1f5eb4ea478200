"""`stepline db copy` of a database into itself, its URL spelled another way: refused before
anything is deleted. Before, on PostgreSQL `--replace`'s TRUNCATE waited for ever for the
copy's own snapshot (one process, two sessions: no deadlock PostgreSQL can see); on SQLite it
deleted the file's rows and wrote them back from its snapshot."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from stepline.cli import cli
from stepline.store import SQLiteStore
from stepline.store.postgres import PostgresStore


def _kept(store: SQLiteStore | PostgresStore) -> list[str]:
    return [name for name, _ in store.sdk_apps("app")]


def _fill(store: SQLiteStore | PostgresStore) -> None:
    store.migrate()
    with store.transaction() as tx:
        tx.put_sdk_app("app", "kept", b"{}", 1.0)


@pytest.mark.timeout(60)  # the copy waited for ever before
def test_a_postgresql_database_copied_into_itself_is_refused(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        _fill(store)
        other_spelling = f"{pg_url}?application_name=copy"
        copied = CliRunner().invoke(cli, ["db", "copy", pg_url, other_spelling, "--replace"])
        assert copied.exit_code == 1, copied.output
        assert "the same database" in copied.output
        assert _kept(store) == ["kept"]
    finally:
        store.close()


def test_another_schema_of_the_same_postgresql_database_is_another_installation(
    pg_url: str,
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS copied CASCADE")
        conn.execute("CREATE SCHEMA copied")
    target_url = f"{pg_url}?options=-csearch_path%3Dcopied"
    store, target = PostgresStore(pg_url), PostgresStore(target_url)
    try:
        _fill(store)
        copied = CliRunner().invoke(cli, ["db", "copy", pg_url, target_url])
        assert copied.exit_code == 0, copied.output
        assert _kept(target) == ["kept"]
    finally:
        store.close()
        target.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA copied CASCADE")


@pytest.mark.parametrize("spelling", ["link", "dotted"])
def test_a_sqlite_file_copied_into_itself_is_refused(tmp_path: Path, spelling: str) -> None:
    path = tmp_path / "a.db"
    (tmp_path / "sub").mkdir()
    os.symlink(path, tmp_path / "link.db")
    other = tmp_path / "link.db" if spelling == "link" else tmp_path / "sub" / ".." / "a.db"
    store = SQLiteStore(path)
    try:
        _fill(store)
        copied = CliRunner().invoke(cli, ["db", "copy", str(path), str(other), "--replace"])
        assert copied.exit_code == 1, copied.output
        assert "the same database" in copied.output
        assert _kept(store) == ["kept"]
    finally:
        store.close()
