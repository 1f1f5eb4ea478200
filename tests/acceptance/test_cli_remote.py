"""The commands on a remote server (issue 9): ``--url``/``--token`` (``STEPLINE_URL``,
``STEPLINE_TOKEN``) make ``stepline runs|events|functions ...`` use a real ``stepline server``'s
REST API, with the same output (tables and ``--json``) as on its database."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from test_cli import TIMEOUT, Cli, wait_until

URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
TOKEN = "remote-cli-token"
ORDERS = [{"orderId": f"o-{i}", "amount": 10 + i} for i in range(3)]


@dataclass
class Served:
    cli: Cli
    url: str

    def local(self, *args: str) -> str:
        """The command on the server's database (as --app on it)."""
        result = self.cli.run(*args, "--app", "examples.shop:app", "--db", self.cli.db)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def remote(self, *args: str, **env: str) -> str:
        """The command on the server, with --url and --token."""
        result = self.cli.run(*args, "--url", self.url, "--token", TOKEN, **env)
        assert result.returncode == 0, result.stderr
        return result.stdout


def _post(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("remote")
    cli = Cli(directory)
    log = directory / "server.log"
    process = cli.start(
        "server", "examples.shop:app", "--db", cli.db, output=log, STEPLINE_API_TOKENS=TOKEN
    )
    try:
        wait_until(
            lambda: bool(URL.search(log.read_text())), "the URL", process=process, output=log
        )
        found = URL.search(log.read_text())
        assert found is not None
        url = found.group(0)
        _post(f"{url}/e/any", [{"name": "order/created", "data": order} for order in ORDERS])
        _post(f"{url}/e/any", {"name": "order/created", "data": {"orderId": "", "amount": 5}})
        served = Served(cli, url)

        def all_ended() -> bool:
            runs = json.loads(served.local("runs", "list", "--json"))
            return len(runs) == 7 and all(r["status"] in ("COMPLETED", "FAILED") for r in runs)

        wait_until(all_ended, "every run to end", process=process, output=log)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=TIMEOUT)


@pytest.mark.parametrize(
    "command",
    [
        ("runs", "list"),
        ("runs", "list", "--json"),
        ("runs", "list", "--function", "send-receipt", "--json"),
        ("runs", "list", "--status", "FAILED"),
        ("events", "list"),
        ("events", "list", "--name", "order/processed", "--json"),
        ("functions", "list"),
        ("functions", "list", "--json"),
        ("runs", "skipped", "--json"),
    ],
)
def test_lists_are_the_same_as_on_the_database(served: Served, command: tuple[str, ...]) -> None:
    assert served.remote(*command) == served.local(*command)


def test_a_run_and_an_event_are_shown_the_same(served: Served) -> None:
    runs = json.loads(served.local("runs", "list", "--function", "process-order", "--json"))
    run = next(r for r in runs if r["status"] == "COMPLETED")
    for ref in (run["run_id"], run["run_id"][-8:]):  # the full id, or its last characters
        assert served.remote("runs", "show", ref) == served.local("runs", "show", ref)
        text = served.remote("runs", "show", ref, "--json")
        assert text == served.local("runs", "show", ref, "--json")
    [event_id] = run["event_ids"]
    assert served.remote("events", "show", event_id) == served.local("events", "show", event_id)
    remote = served.remote("events", "show", event_id, "--json")
    assert remote == served.local("events", "show", event_id, "--json")


def test_the_url_and_token_may_come_from_the_environment(served: Served) -> None:
    result = served.cli.run("runs", "list", "--json", STEPLINE_URL=served.url, STEPLINE_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert result.stdout == served.local("runs", "list", "--json")


def test_a_missing_or_wrong_token_is_one_line(served: Served) -> None:
    for extra in ([], ["--token", "wrong"]):
        result = served.cli.run("runs", "list", "--url", served.url, *extra)
        assert result.returncode == 1
        assert "401" in result.stderr and "--token" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_unreachable_server_is_one_line(served: Served) -> None:
    result = served.cli.run("events", "list", "--url", "http://127.0.0.1:9", "--token", TOKEN)
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in result.stderr
    result = served.cli.run("runs", "list", "--url", served.url, "--db", served.cli.db)
    assert result.returncode == 2
    assert "not with --db" in result.stderr


@pytest.mark.parametrize("where", ["local", "remote"])
def test_runs_list_pages_with_a_cursor(served: Served, where: str) -> None:
    run = getattr(served, where)
    whole = [r["run_id"] for r in json.loads(run("runs", "list", "--json"))]
    seen: list[str] = []
    cursor: list[str] = []
    while True:
        page = run("runs", "list", "--limit", "3", *cursor)
        seen += [
            r["run_id"] for r in json.loads(run("runs", "list", "--limit", "3", "--json", *cursor))
        ]
        more = re.search(r"More: --cursor (\S+)", page)
        if more is None:
            break
        cursor = ["--cursor", more.group(1)]
    assert seen == whole and len(whole) == 7
    json_cursor = json.loads(run("runs", "list", "--limit", "3", "--json"))[-1]["cursor"]
    rest = json.loads(run("runs", "list", "--json", "--cursor", json_cursor))
    assert [r["run_id"] for r in rest] == whole[3:]


SEARCH = 'event.name == "order/created" && event.data.amount >= 11'


@pytest.mark.parametrize("where", ["local", "remote"])
def test_runs_search_pages_with_a_cursor(served: Served, where: str) -> None:
    run = getattr(served, where)
    whole = json.loads(run("runs", "search", SEARCH, "--json"))
    assert (whole["complete"], whole["next_cursor"], whole["failed"]) == (True, None, 0)
    matched = [r["run_id"] for r in whole["runs"]]
    assert len(matched) == 2  # amounts 11 and 12
    first = json.loads(run("runs", "search", SEARCH, "--limit", "1", "--json"))
    assert [r["run_id"] for r in first["runs"]] == matched[:1] and not first["complete"]
    rest = json.loads(run("runs", "search", SEARCH, "--json", "--cursor", first["next_cursor"]))
    assert [r["run_id"] for r in rest["runs"]] == matched[1:] and rest["complete"]
    # a page that stopped at its scan bound says where it stopped
    scanned = run("runs", "search", SEARCH, "--scan", "1")
    assert "No runs match so far." in scanned and "Scanned 1 runs (stopped there)" in scanned
    assert re.search(r"More: --cursor \S+", scanned)
    assert run("runs", "search", SEARCH, "--json") == served.local(
        "runs", "search", SEARCH, "--json"
    )


def test_an_invalid_search_is_one_line(served: Served) -> None:
    for extra in (["--url", served.url, "--token", TOKEN], ["--db", served.cli.db]):
        result = served.cli.run("runs", "search", "event.data.", *extra)
        assert result.returncode in (1, 2) and "invalid search" in result.stderr
        assert "Traceback" not in result.stderr
    result = served.cli.run("runs", "list", "--db", served.cli.db, "--cursor", "nope")
    assert result.returncode == 2 and "invalid cursor" in result.stderr


def test_cancel_replay_pause_resume_and_purge_act_on_the_server(served: Served) -> None:
    runs = json.loads(served.local("runs", "list", "--function", "send-receipt", "--json"))
    original = runs[0]["run_id"]
    replay = json.loads(served.remote("runs", "replay", original, "--json"))
    assert replay["replay_of"] == original and replay["function_id"] == "send-receipt"
    shown = json.loads(served.local("runs", "show", replay["run_id"], "--json"))
    assert shown["function_id"] == "send-receipt"

    assert "Paused process-order" in served.remote("functions", "pause", "process-order")
    assert "was already paused" in served.remote("functions", "pause", "process-order")
    held = _post(f"{served.url}/e/any", {"name": "order/created", "data": ORDERS[0]})
    [held_run] = json.loads(served.local("runs", "list", "--status", "QUEUED", "--json"))
    assert held_run["event_ids"] == held["ids"]
    listed = json.loads(served.remote("functions", "list", "--json"))
    paused = {f["id"]: (f["paused"], f["held_runs"]) for f in listed}
    assert paused == {"process-order": (True, 1), "send-receipt": (False, None)}
    cancelled = json.loads(served.remote("runs", "cancel", held_run["run_id"][-8:], "--json"))
    assert cancelled == {"cancelled": [held_run["run_id"]]}
    again = served.cli.run(
        "runs", "cancel", held_run["run_id"], "--url", served.url, "--token", TOKEN
    )
    assert again.returncode == 1 and "has already ended (CANCELLED)" in again.stderr
    assert "Resumed process-order: 0 held runs" in served.remote(
        "functions", "resume", "process-order"
    )
    bulk = json.loads(served.remote("runs", "cancel", "--function", "process-order", "--json"))
    assert bulk == {"cancelled": []}  # nothing unfinished

    purged = served.remote("runs", "purge", "--before", "2000-01-01")
    assert purged.startswith("Deleted 0 runs that ended before")
