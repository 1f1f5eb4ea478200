"""``stepline server``'s access settings (issue 9): ``--dashboard-password`` (and
``STEPLINE_DASHBOARD_PASSWORD``) logs in to the dashboard; ``--keys-file`` (``STEPLINE_KEYS_FILE``)
revokes an event key or an API token without a restart; a keys file it cannot read stops it."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_cli import TIMEOUT, Cli, cli_in, wait_until

from stepline._tls import tls_context
from stepline.cli._commands._http import server_settings
from stepline.cli._common import CliUsageError

URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield from cli_in(tmp_path)


def _start(cli: Cli, log: Path, *args: str, **env: str) -> str:
    process = cli.start("server", "examples.shop:app", "--db", cli.db, *args, output=log, **env)
    wait_until(lambda: bool(URL.search(log.read_text())), "the URL", process=process, output=log)
    found = URL.search(log.read_text())
    assert found is not None
    return found.group(0)


def _stop(cli: Cli) -> None:
    for process in cli.started:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=TIMEOUT) == 0


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@pytest.mark.parametrize("given", ["flag", "env"])
def test_the_dashboard_password_logs_in(cli: Cli, tmp_path: Path, given: str) -> None:
    log = tmp_path / "server.log"
    if given == "flag":
        url = _start(cli, log, "--dashboard-password", "hunter2", STEPLINE_API_TOKENS="tok")
    else:
        url = _start(cli, log, STEPLINE_DASHBOARD_PASSWORD="hunter2", STEPLINE_API_TOKENS="tok")
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT, verify=tls_context()) as client:
            assert client.get("/functions").status_code == 303  # not `stepline dev`: a login
            csrf = _csrf(client.get("/login").text)
            wrong = client.post("/login", data={"csrf": csrf, "secret": "nope", "next": "/"})
            assert wrong.status_code == 401
            ok = client.post("/login", data={"csrf": csrf, "secret": "hunter2", "next": "/"})
            assert ok.status_code == 303
            page = client.get("/functions")
            assert page.status_code == 200 and "process-order" in page.text
    finally:
        _stop(cli)
    assert "hunter2" not in log.read_text()


def test_a_key_removed_from_the_keys_file_is_refused_without_a_restart(
    cli: Cli, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("event-key ek-old\nevent-key ek-new\napi-token tok-1\n")
    url = _start(cli, tmp_path / "server.log", STEPLINE_KEYS_FILE=str(keys))
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT, verify=tls_context()) as client:
            assert client.post("/e/ek-old", json={"name": "a"}).status_code == 200
            auth = {"Authorization": "Bearer tok-1"}
            assert client.get("/api/v1/functions", headers=auth).status_code == 200
            fresh = tmp_path / "keys.new"
            fresh.write_text("event-key ek-new\napi-token tok-2\n")
            os.replace(fresh, keys)  # ek-old and tok-1 revoked
            deadline = time.monotonic() + TIMEOUT
            while client.post("/e/ek-old", json={"name": "a"}).status_code != 401:
                assert time.monotonic() < deadline, "ek-old still accepted"
                time.sleep(0.05)  # real time: the server re-reads the file within a second
            assert client.post("/e/ek-new", json={"name": "a"}).status_code == 200
            assert client.get("/api/v1/functions", headers=auth).status_code == 401
            tok2 = {"Authorization": "Bearer tok-2"}
            assert client.get("/api/v1/functions", headers=tok2).status_code == 200
    finally:
        _stop(cli)


def test_a_keys_file_that_cannot_be_read_stops_the_server(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("server", "examples.shop:app", "--db", cli.db, "--keys-file", "missing")
    assert result.returncode == 2
    assert "--keys-file: cannot read the keys file" in result.stderr
    keys = tmp_path / "keys"
    keys.write_text("event-key ek\napi-token tok\n")
    settings = server_settings("0.0.0.0", 0, (), (), dev=False, keys_file=keys)
    assert settings.accepted_event_keys() == ("ek",)  # the file's keys count as keys given
    keys.write_text("event-key ek\n")
    with pytest.raises(CliUsageError, match="without --api-token"):
        server_settings("0.0.0.0", 0, (), (), dev=False, keys_file=keys)
