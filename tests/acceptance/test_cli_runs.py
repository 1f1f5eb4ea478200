"""Acting on runs and functions from the command line: ``runs cancel``, ``runs replay``,
``runs skipped`` and ``functions list|pause|resume``, as real processes on a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import TIMEOUT, Cli, cli_in, wait_until

FLOW_APP = '''
"""Functions for the CLI tests: one that sleeps an hour, one that fails until a file exists,
one rate-limited."""

from pathlib import Path

import stepline
from stepline import App, Context, NonRetriableError, RateLimit

app = App("flow")
HERE = Path(__file__).parent


@app.function(id="nap", trigger=stepline.TriggerEvent("nap/start"))
async def nap(ctx: Context) -> int:
    k = await ctx.step.run("first", lambda: ctx.event.data.get("k", 0))
    await ctx.step.sleep("long", "1h")
    return k


def note(name: str) -> None:
    with (HERE / "calls.log").open("a") as log:
        log.write(name + "\\n")


def fetch() -> dict:
    note("fetch")
    return {"items": 3}


def deliver(found: dict) -> dict:
    note("deliver")
    if not (HERE / "carrier.up").exists():
        raise NonRetriableError("the carrier is down")
    return {"delivered": found["items"]}


@app.function(id="ship", trigger=stepline.TriggerEvent("ship/start"))
async def ship(ctx: Context) -> dict:
    found = await ctx.step.run("fetch", fetch)
    return await ctx.step.run("deliver", deliver, found)


@app.function(
    id="limited",
    trigger=stepline.TriggerEvent("limited/go"),
    rate_limit=RateLimit(limit=1, period="1h"),
)
async def limited(ctx: Context) -> str:
    return "ok"
'''


@pytest.fixture
def cli(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cli]:
    """A CLI runner in a directory holding the ``flow`` app, on a SQLite file, or on this
    worker's PostgreSQL database for a test parametrized with ``ON_BOTH_STORES``."""
    (tmp_path / "flow.py").write_text(FLOW_APP)
    for runner in cli_in(tmp_path):
        if getattr(request, "param", "sqlite") == "postgres":
            runner.database = request.getfixturevalue("pg_url")
        yield runner


# the commands that change runs and functions, on both stores (the others read what any store
# lists the same way: SQLite alone)
ON_BOTH_STORES = pytest.mark.parametrize("cli", ["sqlite", "postgres"], indirect=True)


def send(cli: Cli, name: str, data: str = "{}") -> tuple[str, list[str]]:
    """Send an event with ``stepline send``: its id and the ids of the runs it started."""
    sent = cli.run("send", name, "--data", data, "--app", "flow:app", "--db", cli.db)
    assert sent.returncode == 0, sent.stderr
    [event_line, *lines] = sent.stdout.splitlines()
    return event_line.split()[1], [line.split()[1] for line in lines if line.startswith("  run ")]


def show(cli: Cli, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = cli.json("runs", "show", run_id, "--db", cli.db)
    return shown


def wait_for_status(cli: Cli, run_id: str, status: str, process: subprocess.Popen[bytes]) -> None:
    """Poll until the run is in ``status``."""
    wait_until(lambda: cli.status(run_id) == status, f"run {run_id} {status}", process=process)


def on_a_terminal(cli: Cli, *args: str, answer: str) -> subprocess.CompletedProcess[bytes]:
    """Run a command with a terminal as stdin, typing ``answer``."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "stepline.cli", *args],
            cwd=cli.cwd,
            env=cli.env(),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.write(controller, answer.encode() + b"\n")
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# -- cancel and replay ---------------------------------------------------------------------------
@ON_BOTH_STORES
def test_cancel_a_sleeping_run_then_replay_it_in_the_live_log(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    dev = cli.start("dev", "flow:app", "--db", cli.db, output=log)
    _, [run_id] = send(cli, "nap/start", '{"k": 7}')
    wait_for_status(cli, run_id, "SLEEPING", dev)
    short = run_id[-8:]

    cancelled = cli.run("runs", "cancel", short.lower(), "--reason", "not needed", "--db", cli.db)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.splitlines() == ["Cancelled 1 run of nap:", f"  {run_id}"]
    run = show(cli, run_id)
    assert run["status"] == "CANCELLED"
    assert run["history"][-1]["kind"] == "RUN_CANCELLED"
    assert run["history"][-1]["data"] == {"reason": "not needed"}
    text = cli.run("runs", "show", run_id, "--db", cli.db).stdout
    assert re.search(r"reason +not needed", text)
    wait_until(
        lambda: re.search(rf"nap +{short} +RUN_CANCELLED +not needed", log.read_text()) is not None,
        "the cancellation in the live log",
        process=dev,
        output=log,
    )
    again = cli.run("runs", "cancel", run_id, "--db", cli.db)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"Error: run {run_id} has already ended (CANCELLED): nothing to cancel"
        f" (database {cli.label})"
    )

    replayed = cli.run("runs", "replay", short, "--app", "flow:app", "--db", cli.db)
    assert replayed.returncode == 0, replayed.stderr
    first = replayed.stdout.splitlines()[0].split()
    new_id = first[1]
    assert first[:5] == ["run", new_id, "nap", "QUEUED", "(replay"]
    wait_for_status(cli, new_id, "SLEEPING", dev)
    replay = show(cli, new_id)
    assert replay["event_ids"] == run["event_ids"]
    assert [h["kind"] for h in replay["history"]][:2] == ["RUN_QUEUED", "RUN_REPLAYED"]
    assert re.search(
        rf"replay of +{run_id}", cli.run("runs", "show", new_id, "--db", cli.db).stdout
    )
    wait_until(
        lambda: (
            re.search(rf"{new_id[-8:]} +RUN_REPLAYED +replay of {short}", log.read_text())
            is not None
        ),
        "the replay in the live log",
        process=dev,
        output=log,
    )
    busy = cli.run("runs", "replay", new_id, "--db", cli.db)
    assert busy.returncode == 1
    assert f"run {new_id} has not ended (SLEEPING)" in busy.stderr

    dev.send_signal(signal.SIGINT)
    assert dev.wait(timeout=TIMEOUT) == 0
    assert "Traceback" not in log.read_text()


def test_bulk_cancel_selects_runs_with_an_expression(cli: Cli) -> None:
    ids = {k: send(cli, "nap/start", f'{{"k": {k}}}')[1][0] for k in (1, 2, 3)}
    bulk = ("runs", "cancel", "--function", "nap", "--db", cli.db)

    invalid = cli.run(*bulk, "--if", "event.data.k >=")
    assert invalid.returncode == 2
    assert invalid.stderr.startswith("Error: --if: invalid expression 'event.data.k >=' at column")

    declined = on_a_terminal(cli, *bulk, "--if", "event.data.k >= 2", answer="n")
    assert declined.returncode == 1
    assert b"Cancel 3 unfinished runs of nap, those whose event matches event.data.k >= 2?" in (
        declined.stderr
    )
    assert {r["status"] for r in cli.json("runs", "list", "--db", cli.db)} == {"QUEUED"}

    none = cli.json(*bulk, "--until", "2000-01-01T00:00:00Z")
    assert none == {"cancelled": []}
    done = cli.json(
        *bulk, "--if", "event.data.k >= 2", "--since", "1h"
    )  # not a terminal: no prompt
    assert sorted(done["cancelled"]) == sorted([ids[2], ids[3]])
    statuses = {r["run_id"]: r["status"] for r in cli.json("runs", "list", "--db", cli.db)}
    assert statuses == {ids[1]: "QUEUED", ids[2]: "CANCELLED", ids[3]: "CANCELLED"}

    confirmed = on_a_terminal(cli, *bulk, answer="y")
    assert confirmed.returncode == 0, confirmed.stderr
    assert b"Cancel 1 unfinished run of nap?" in confirmed.stderr
    assert confirmed.stdout.decode().splitlines() == ["Cancelled 1 run of nap:", f"  {ids[1]}"]
    nothing = cli.run(*bulk, "--yes")
    assert nothing.returncode == 0
    assert nothing.stdout.strip() == "No run of nap cancelled: no unfinished run matched."


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "give a RUN_ID to cancel, or --function ID to cancel runs in bulk"),
        (("01ABC", "--if", "true"), 2, "--if: only for bulk cancellation (--function ID)"),
        (("--function", "nap", "--since", "soon"), 2, "--since must be an ISO 8601 time"),
        (("01NOSUCHRUN0000000000000000",), 1, "no run '01NOSUCHRUN0000000000000000'"),
    ],
)
def test_cancel_errors_are_one_clear_line(
    cli: Cli, args: tuple[str, ...], code: int, message: str
) -> None:
    send(cli, "nap/start")  # creates the database
    result = cli.run("runs", "cancel", *args, "--db", cli.db)
    assert result.returncode == code
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {message}")


@ON_BOTH_STORES
def test_replay_from_a_step_keeps_the_results_before_it(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = cli.start("worker", "flow:app", "--db", cli.db, output=log)
    _, [run_id] = send(cli, "ship/start")
    wait_for_status(cli, run_id, "FAILED", worker)
    calls = cli.cwd / "calls.log"
    assert calls.read_text().split() == ["fetch", "deliver"]

    unknown = cli.run("runs", "replay", run_id, "--from-step", "nope", "--db", cli.db)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        f"Error: run {run_id} has no step 'nope' (steps: fetch, deliver) (database {cli.label})"
    )
    (cli.cwd / "carrier.up").touch()
    replayed = cli.json("runs", "replay", run_id, "--from-step", "deliver", "--db", cli.db)
    assert replayed["replay_of"] == run_id and replayed["from_step"] == "deliver"
    wait_for_status(cli, replayed["run_id"], "COMPLETED", worker)
    assert calls.read_text().split() == ["fetch", "deliver", "deliver"]  # fetch kept, not rerun
    assert show(cli, replayed["run_id"])["output"] == {"delivered": 3}


# -- functions -----------------------------------------------------------------------------------
@ON_BOTH_STORES
def test_a_paused_function_holds_its_runs_until_resumed(cli: Cli, tmp_path: Path) -> None:
    paused = cli.run("functions", "pause", "nap", "--app", "flow:app", "--db", cli.db)
    assert paused.returncode == 0, paused.stderr  # before any worker: the database is created
    assert paused.stdout.startswith("Paused nap: its runs are held")
    ghost = cli.run("functions", "pause", "ghost", "--app", "flow:app", "--db", cli.db)
    assert ghost.returncode == 1
    assert ghost.stderr.strip() == (
        "Error: app 'flow' has no function 'ghost' (its functions: nap, ship, limited)"
        f" (database {cli.label})"
    )

    log = tmp_path / "worker.log"
    worker = cli.start("worker", "flow:app", "--db", cli.db, output=log)
    _, [held] = send(cli, "nap/start")
    _, [other] = send(cli, "limited/go")
    wait_for_status(cli, other, "COMPLETED", worker)  # the worker leases; it left nap's run
    assert show(cli, held)["status"] == "QUEUED"

    listed = {
        f["id"]: f for f in cli.json("functions", "list", "--app", "flow:app", "--db", cli.db)
    }
    assert list(listed) == ["nap", "ship", "limited"]
    assert (listed["nap"]["paused"], listed["nap"]["held_runs"]) == (True, 1)
    assert listed["limited"]["options"] == ["rate limit 1/1h"]
    assert listed["limited"]["triggers"] == ["limited/go"] and not listed["limited"]["paused"]
    table = cli.run("functions", "list", "--app", "flow:app", "--db", cli.db).stdout
    assert re.search(r"nap +paused \(1 held\) +nap/start", table)
    assert re.search(r"limited +active +limited/go +rate limit 1/1h", table)
    bare = cli.run("functions", "list", "--db", cli.db).stdout  # no definitions: the paused
    assert bare.startswith("nap  paused (1 held)")

    resumed = cli.run("functions", "resume", "nap", "--db", cli.db)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "Resumed nap: 1 held run starts when a worker runs."
    wait_for_status(cli, held, "SLEEPING", worker)
    assert cli.run("functions", "resume", "nap", "--db", cli.db).stdout.strip() == (
        "nap was not paused."
    )
    unseen = cli.run("functions", "pause", "typo", "--db", cli.db)
    assert unseen.returncode == 0
    assert "Warning: no run of 'typo' in this database" in unseen.stderr


def test_runs_skipped_lists_what_the_rate_limit_dropped(cli: Cli) -> None:
    send(cli, "limited/go")
    sent = cli.run("send", "limited/go", "--app", "flow:app", "--db", cli.db)
    second = sent.stdout.split()[1]
    assert "skipped by limited: rate_limit" in sent.stdout
    third, _ = send(cli, "limited/go")

    records = cli.json("runs", "skipped", "--db", cli.db)
    assert [(r["event_id"], r["function_id"], r["reason"]) for r in records] == [
        (third, "limited", "rate_limit"),
        (second, "limited", "rate_limit"),
    ]
    assert records[0]["event_name"] == "limited/go"
    assert [r["event_id"] for r in cli.json("runs", "skipped", "--limit", "1", "--db", cli.db)] == [
        third
    ]
    table = cli.run("runs", "skipped", "--function", "limited", "--db", cli.db)
    assert table.returncode == 0, table.stderr
    assert re.search(rf"limited +rate_limit +{second} +limited/go", table.stdout)
    empty = cli.run("runs", "skipped", "--function", "nap", "--db", cli.db)
    assert empty.stdout.strip() == "No skipped runs."
    assert json.loads(cli.run("runs", "skipped", "--db", cli.db, STEPLINE_JSON="1").stdout)
