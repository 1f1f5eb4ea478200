"""Inngest SDK apps under ``stepline dev`` and ``stepline server``: the apps synced before are
registered again at start (their runs resume without a new sync), and a production server never
serves an SDK app without a signing key (``--signing-key`` / ``INNGEST_SIGNING_KEY``).

issue 10 ("Dev and production modes": ``stepline server`` requires signing keys); the gaps the
HTTP driver's first landing left: no restore at start, keys only as driver arguments.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import TIMEOUT, Cli, cli_in, wait_until

from stepline import App
from stepline.drivers.inngest import SdkApps
from stepline.testing import MockClock, TestEngine

URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
KEY = "signkey-test-8f3c2a6b0d9e4f17a5b3c8d2e1f0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1"
FUNCTION_URL = "http://127.0.0.1:9/api/inngest?fnId=tiny-a&stepId=step"
REGISTRATION = {
    "appName": "tiny",
    "url": "http://127.0.0.1:9/api/inngest",
    "functions": [
        {
            "id": "tiny-a",
            "name": "a",
            "triggers": [{"event": "tiny/a"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "a",
                    "runtime": {"type": "http", "url": FUNCTION_URL},
                }
            },
        }
    ],
}


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield from cli_in(tmp_path)


def _store_registration(db_file: Path) -> None:
    """Sync the ``tiny`` SDK app into the ``shop`` app's database (as a running server would)."""

    async def sync() -> None:
        async with TestEngine(
            App("shop"), store="sqlite", path=db_file, clock=MockClock(autojump=False)
        ) as t:
            await SdkApps(t.app).register(REGISTRATION)

    asyncio.run(sync())


def _functions(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/v1/functions", timeout=TIMEOUT) as response:
        return {fn["id"]: fn for fn in json.loads(response.read())["data"]}


def _serve(cli: Cli, tmp_path: Path, command: str, **env: str) -> tuple[Any, str, Path]:
    log = tmp_path / f"{command}-{len(env)}.log"
    process = cli.start(command, "examples.shop:app", "--db", cli.db, output=log, **env)

    def served() -> str:
        found = URL.search(log.read_text())
        return found.group(0) if found else ""

    wait_until(lambda: bool(served()), "the URL", process=process, output=log)
    return process, served(), log


def _stop(process: Any, log: Path) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=TIMEOUT) == 0, log.read_text()


@pytest.mark.parametrize(
    ("command", "env"), [("dev", {}), ("server", {"INNGEST_SIGNING_KEY": KEY})]
)
def test_a_synced_sdk_app_is_served_again_after_a_restart(
    cli: Cli, tmp_path: Path, command: str, env: dict[str, str]
) -> None:
    _store_registration(tmp_path / "x.db")
    process, url, log = _serve(cli, tmp_path, command, **env)
    try:
        functions = _functions(url)
        assert functions["tiny-a"]["sdk_app"] == {"name": "tiny", "url": FUNCTION_URL}
    finally:
        _stop(process, log)


def test_a_server_without_a_signing_key_serves_no_sdk_app(cli: Cli, tmp_path: Path) -> None:
    _store_registration(tmp_path / "x.db")
    process, url, log = _serve(cli, tmp_path, "server")
    try:
        assert "tiny-a" not in _functions(url)  # stored, but never driven unsigned
        request = urllib.request.Request(
            f"{url}/fn/register", data=json.dumps(REGISTRATION).encode(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        assert refused.value.code == 401
        assert "--signing-key" in refused.value.read().decode()
        assert "tiny-a" not in _functions(url)
    finally:
        _stop(process, log)
    assert "no --signing-key" in log.read_text()
    assert KEY not in log.read_text()
