"""``stepline db migrate status|up`` and ``stepline db check`` on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

import pgtest
import sqlitetest
from stepline.cli import cli
from stepline.store.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from stepline.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """An empty database of each kind (no schema yet) and the newest schema version."""
    if request.param == "sqlite":
        (tmp_path / "m.db").touch()  # an empty file: a database without tables
        return f"sqlite:///{tmp_path / 'm.db'}", len(SQLITE_MIGRATIONS)
    request.getfixturevalue("pg_database")  # the cluster is up
    worker = request.node.name.replace("[", "_").replace("]", "").lower()[-40:]
    url = pgtest.create_database(pgtest.cluster(), f"m_{worker}")
    return url, len(PG_MIGRATIONS)


def test_migrate_status_up_and_check(empty_db: tuple[str, int]) -> None:
    url, latest = empty_db
    status = invoke("db", "migrate", "status", "--db", url)
    assert status.exit_code == 0, status.output
    assert f"schema version 0 of {latest}: {latest} migration(s) to apply" in status.output
    needs = invoke("db", "check", "--db", url)
    assert needs.exit_code == 1
    assert "connected: yes" in needs.output
    assert "stepline db migrate up" in needs.output

    up = invoke("db", "migrate", "up", "--db", url)
    assert up.exit_code == 0, up.output
    assert f"applied migrations 1..{latest}" in up.output
    again = invoke("db", "migrate", "up", "--db", url)
    assert "up to date, nothing applied" in again.output
    assert (
        f"schema version {latest} of {latest}: up to date"
        in invoke("db", "migrate", "status", "--db", url).output
    )

    check = invoke("db", "check", "--db", url)
    assert check.exit_code == 0, check.output
    assert f"schema version: {latest} of {latest}" in check.output
    assert "clock skew: " in check.output


def test_check_fails_on_a_clock_skew_beyond_what_workers_and_senders_accept(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 8 ("Time"): a process whose clock is more than max_clock_skew (1 s) from the
    # server's refuses to open the database; `db check` reported the skew and exited 0 there
    pgtest.clock_ahead(monkeypatch, 5.0)
    check = invoke("db", "check", "--db", pg_url)
    assert check.exit_code == 1, check.output
    # the measured skew (the server's clock minus this machine's): about -5 s under any load
    shown = re.search(r"clock skew: ([+-][0-9.]+) ms", check.output)
    assert shown is not None, check.output
    assert -5500 < float(shown.group(1)) < -4500, check.output
    said = re.search(
        r"this machine's clock is \+([0-9.]+) s from the database server's", check.output
    )
    assert said is not None and 4.5 < float(said.group(1)) < 5.5, check.output
    assert "(ahead of it;" in check.output
    assert "synchronize the clocks (NTP)" in check.output
    assert "Traceback" not in check.output
    monkeypatch.undo()
    assert invoke("db", "check", "--db", pg_url).exit_code == 0


@pytest.mark.parametrize("command", [("db", "check"), ("db", "migrate", "status")])
def test_looking_at_a_sqlite_file_that_is_not_there_makes_none(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # before, each made an empty database there (and its folder), and said it needed
    # migrations: a typo left a database the commands after it took for one ("No runs.")
    path = tmp_path / "typo" / "stepline.db"
    result = invoke(*command, "--db", str(path))
    assert result.exit_code == 1
    assert f"no database at {path}" in result.output
    assert not path.parent.exists()
    made = invoke("db", "migrate", "up", "--db", str(path))
    assert made.exit_code == 0, made.output
    assert invoke(*command, "--db", str(path)).exit_code == 0


def test_check_says_when_the_server_cannot_be_reached(pg_database: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pg_database)
    unused = f"postgresql://{info['user']}@127.0.0.1:1/{info['dbname']}?connect_timeout=1"
    result = invoke("db", "check", "--db", unused)
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_a_database_of_another_application_is_refused(pg_database: str) -> None:
    url = pgtest.create_database(pgtest.cluster(), "someone_else")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    result = invoke("db", "migrate", "up", "--db", url)
    assert result.exit_code == 1
    assert "is not a Stepline database: it holds other tables (invoices)" in result.output


def test_memory_has_no_schema() -> None:
    result = invoke("db", "check", "--db", "memory://")
    assert result.exit_code == 1
    assert "memory:// has no schema" in result.output


def test_migrate_up_waits_for_the_workers_of_the_version_before_unless_forced(
    tmp_path: Path,
) -> None:
    # review F3: migration 20 changes what a worker of schema 19 reads (a resolved wait kept)
    path = tmp_path / "m.db"
    sqlitetest.file_at_version(path, 19, ("w-old", time.time() + 600))
    url = f"sqlite:///{path}"
    refused = invoke("db", "migrate", "up", "--db", url)
    assert refused.exit_code == 1
    assert "1 worker(s) are alive" in refused.output and "(w-old)" in refused.output
    assert "Traceback" not in refused.output and len(refused.output.splitlines()) == 1
    assert "schema version 19 of" in invoke("db", "migrate", "status", "--db", url).output
    sent = invoke("send", "go", "--db", url)  # any process opening it: the same refusal
    assert sent.exit_code == 1 and "stop them before the first start" in sent.output
    forced = invoke("db", "migrate", "up", "--force", "--db", url)
    assert forced.exit_code == 0, forced.output
    assert f"applied migrations 20..{len(SQLITE_MIGRATIONS)}" in forced.output


def test_a_copy_from_a_missing_source_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    # review R5 (thirteenth stop): a typo in SOURCE made an empty database there, "copied 0 rows"
    source = tmp_path / "typo" / "stepline.db"
    result = invoke("db", "copy", str(source), str(tmp_path / "target.db"))
    assert result.exit_code == 1, result.output
    assert f"no database at {source}: nothing to copy" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither folder nor target made


def test_a_copy_from_a_database_without_stepline_schema_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "empty.db"
    source.touch()  # a file, but no Stepline database in it: not migrated into one
    result = invoke("db", "copy", f"sqlite:///{source}", str(tmp_path / "target.db"))
    assert result.exit_code == 1, result.output
    assert "holds no Stepline database: nothing to copy" in result.output
    with closing(sqlite3.connect(source)) as conn:  # no schema written into it
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    assert not (tmp_path / "target.db").exists()


@pytest.mark.parametrize("command", [("db", "check"), ("db", "migrate", "status")])
@pytest.mark.parametrize(
    ("database", "cause"),
    [
        ("no_such_db", 'database "no_such_db" does not exist'),
        ("{dbname}?sslmode=bogus", 'invalid sslmode value: "bogus"'),
    ],
    ids=["no-database", "bad-sslmode"],
)
def test_a_look_at_a_postgresql_database_it_cannot_connect_to_says_why(
    pg_database: str, command: tuple[str, ...], database: str, cause: str
) -> None:
    # before: each waited the pool's connect timeout (10 s), trying again, and said "the store
    # is unavailable: cannot connect: couldn't get a connection after 10.00 sec … retry later",
    # the cause only in psycopg_pool's log warnings
    info = psycopg.conninfo.conninfo_to_dict(pg_database)
    path = database.format(dbname=info["dbname"])
    url = f"postgresql://{info['user']}@{info['host']}:{info['port']}/{path}"
    result = invoke(*command, "--db", url)
    assert result.exit_code == 1
    assert cause in result.output, result.output
