"""``stepline dev`` and ``stepline server`` serving HTTP: the URL printed, the probes, the
refusal to listen on a reachable address without keys, a clean stop."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import TIMEOUT, Cli, cli_in, wait_until

from stepline.cli import cli as stepline_cli

URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    yield from cli_in(tmp_path)


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.status, json.loads(response.read())


def _served_url(log: Path) -> str:
    found = URL.search(log.read_text())
    return found.group(0) if found else ""


@pytest.mark.parametrize("command", ["dev", "server"])
def test_serves_http_and_stops_on_sigint(cli: Cli, tmp_path: Path, command: str) -> None:
    log = tmp_path / f"{command}.log"
    process = cli.start(command, "examples.shop:app", "--db", cli.db, output=log)
    wait_until(lambda: bool(_served_url(log)), "the URL", process=process, output=log)
    url = _served_url(log)
    status, body = _get(f"{url}/health")
    assert (status, body) == (200, {"status": "ok"})
    status, body = _get(f"{url}/ready")
    assert (status, body) == (200, {"status": "ready"})
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=TIMEOUT) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("command", ["dev", "server"])
def test_refuses_a_reachable_address_without_keys(command: str) -> None:
    result = CliRunner().invoke(
        stepline_cli, [command, "examples.shop:app", "--db", "memory://", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2, result.output
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "--event-key and --api-token" in result.stderr


def test_a_port_in_use_is_one_line(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "first.log"
    first = cli.start("server", "examples.shop:app", "--db", cli.db, output=log)
    wait_until(lambda: bool(_served_url(log)), "the URL", process=first, output=log)
    url = _served_url(log)
    port = url.rsplit(":", 1)[1]
    second = cli.run("server", "examples.shop:app", "--db", cli.db, "--port", port)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert "Traceback" not in second.stderr
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=TIMEOUT) == 0


def test_server_without_a_worker_accepts_events_and_runs_none(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "api-only.log"
    process = cli.start("server", "examples.shop:app", "--db", cli.db, "--no-worker", output=log)
    wait_until(lambda: bool(_served_url(log)), "the URL", process=process, output=log)
    url = _served_url(log)
    assert "no worker" in log.read_text()
    body = json.dumps({"name": "order/created", "data": {"orderId": "o-1", "amount": 5}})
    request = urllib.request.Request(
        f"{url}/e/any", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        [event_id] = json.loads(response.read())["ids"]
    status, runs = _get(f"{url}/api/v1/runs?event={event_id}")
    assert status == 200
    assert [r["status"] for r in runs["data"]] == ["QUEUED"]  # recorded, executed by no one
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=TIMEOUT) == 0
