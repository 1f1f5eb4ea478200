"""A password in a database URL is never shown. Before, `--verbose` printed the URL whole, every
command's error named it whole ("… (database postgresql://user:secret@host/db)"), so did `db
check`'s and `db migrate status`'s, an invalid URL's error quoted it, and `stepline worker`,
`stepline server` and `stepline dev` logged it at start (all through ``shown_url`` now)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ports import free_port
from stepline._urls import shown_url
from stepline.cli import cli
from stepline.errors import ConfigError
from stepline.store.postgres.store import PostgresStore

SECRET = "s3cret-pw"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_verbose_names_the_database_without_its_password(pg_url: str) -> None:
    url = pg_url.replace("://stepline@", f"://stepline:{SECRET}@")  # trust: not asked for
    code, output = _invoke("runs", "list", "-v", "--db", url)
    assert code == 0, output
    assert "stepline:***@127.0.0.1" in output
    assert SECRET not in output


@pytest.mark.parametrize(
    "command", [("runs", "list"), ("db", "check"), ("db", "migrate", "status")]
)
def test_an_unreachable_databases_errors_do_not_show_its_password(command: tuple[str, ...]) -> None:
    url = f"postgresql://stepline@127.0.0.1:{free_port()}/x?connect_timeout=1&password={SECRET}"
    code, output = _invoke(*command, "--db", url)
    assert code == 1, output
    assert "password=***" in output
    assert SECRET not in output


def test_an_invalid_urls_error_does_not_show_its_password() -> None:
    code, output = _invoke("db", "check", "--db", f"postgresql://stepline:{SECRET}@[::1/x")
    assert code == 1
    assert "invalid PostgreSQL URL" in output
    assert SECRET not in output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p@ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        (
            "postgresql://u@h/db?sslmode=require&Password=pw",
            "postgresql://u@h/db?sslmode=require&Password=***",
        ),
        ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///a@b:c.db", "sqlite:///a@b:c.db"),
        ("/data/a:b@c.db", "/data/a:b@c.db"),
    ],
)
def test_shown_url(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize("given", ["abc", "nan", "inf", "1e999"])
def test_a_connect_timeout_that_is_no_number_is_a_config_error(given: str) -> None:
    # float() raised ValueError out of the store's constructor (lead, nineteenth stop)
    url = f"postgresql://stepline:{SECRET}@127.0.0.1:1/x?connect_timeout={given}"
    with pytest.raises(
        ConfigError, match=f"connect_timeout must be a number of seconds, got '{given}'"
    ) as refused:
        PostgresStore(url)
    assert SECRET not in str(refused.value)
