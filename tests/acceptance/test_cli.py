"""The ``stepline`` command line, run as a real process (``python -m stepline.cli``, forked from
a warm interpreter: ``_cli_fork``) in a temporary directory, on a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _cli_fork import run_cli, start_cli

from forkserver import Process
from stepline.store import Store, open_store
from stepline.store.records import RunFilter
from stepline.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


@dataclass
class Cli:
    """``python -m stepline.cli`` with the repository importable (for ``examples``) and a
    database in ``cwd``."""

    cwd: Path
    started: list[Process] = field(default_factory=list)
    database: str | None = None

    @property
    def db(self) -> str:
        """The test's database URL."""
        return self.database or f"sqlite:///{self.cwd / 'x.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a CLI process: none of the caller's STEPLINE_* or COLUMNS
        (but STEPLINE_PORT=0)."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("STEPLINE_") and k != "COLUMNS"
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env["STEPLINE_PORT"] = "0"  # `stepline dev` serves HTTP: any free port, never 8288
        return {**env, **extra}

    def run(
        self, *args: str, timeout: float = TIMEOUT, fresh: bool = False, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end: a process of its own, forked from a warm interpreter
        (``_cli_fork``), or with ``fresh`` a new one; stdin is never the terminal pytest runs
        in (no prompts)."""
        return run_cli(args, env=self.env(**env), cwd=self.cwd, timeout=timeout, fresh=fresh)

    def statuses(self, function_id: str | None = None) -> list[tuple[str, str]]:
        """(function id, status) of the database's runs, newest first, read in this process: what
        a wait polls (a CLI process for each poll cost ~0.2 s of CPU); what a command shows is
        asserted through the command."""
        store = self._store()
        if store is None:
            return []
        try:
            return [(r.function_id, r.status) for r in store.list_runs(RunFilter(function_id))]
        finally:
            store.close()

    def status(self, run_id: str) -> str | None:
        """A run's status, read in this process (see ``statuses``)."""
        store = self._store()
        if store is None:
            return None
        try:
            record = store.get_run(run_id)
            return None if record is None else record.status
        finally:
            store.close()

    def _store(self) -> Store | None:
        """The test's database, opened in this process (None: no SQLite file yet)."""
        if self.database is not None:
            return open_store(self.database)
        path = self.cwd / "x.db"
        return SQLiteStore(path) if path.exists() else None

    @property
    def label(self) -> str:
        """How the CLI names the database in its messages."""
        return self.database or str(self.cwd / "x.db")

    def json(self, *args: str) -> Any:
        """Run a command that prints JSON (``--json`` is added) and parse its output."""
        result = self.run(*args, "--json")
        assert result.returncode == 0, (args, result.stderr)
        return json.loads(result.stdout)

    def start(self, *args: str, output: Path, **env: str) -> Process:
        """Start a long-running command (forked as ``run``'s); stdout and stderr go to
        ``output``."""
        with output.open("wb") as sink:
            process = start_cli(args, env=self.env(**env), cwd=self.cwd, output=sink.fileno())
        self.started.append(process)
        return process


def wait_until(
    check: Callable[[], bool],
    what: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    output: Path | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Poll ``check`` until it is true. Fail naming ``what`` after ``timeout`` seconds, or as
    soon as ``process`` exits (showing its ``output``)."""
    deadline = time.monotonic() + timeout
    while not check():
        log = output.read_text() if output is not None else ""
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {what}:\n{log}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}:\n{log}")
        time.sleep(0.05)  # real time: polls a real CLI process; the deadline bounds the wait


def cli_in(directory: Path) -> Iterator[Cli]:
    """A CLI runner in ``directory``; processes it started are killed at the end."""
    runner = Cli(directory)
    yield runner
    for process in runner.started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A CLI runner in a fresh directory."""
    yield from cli_in(tmp_path)


ORDER = '{"orderId": "o-1", "amount": 120}'


@dataclass
class Shop:
    """The example shop after one ``stepline dev ... --exit-when-done``."""

    cli: Cli
    dev: subprocess.CompletedProcess[str]

    def runs(self, *args: str) -> list[dict[str, Any]]:
        result = self.cli.run("runs", "list", "--db", self.cli.db, "--json", *args)
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found

    def run_of(self, function_id: str) -> dict[str, Any]:
        [run] = self.runs("--function", function_id)
        return run


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    cli = Cli(tmp_path_factory.mktemp("shop"))
    dev = cli.run(
        "dev", "examples.shop:app", "--db", cli.db,
        "--send", "order/created", "--data", ORDER, "--exit-when-done",
    )  # fmt: skip
    return Shop(cli, dev)


# -- dev ---------------------------------------------------------------------------------------
def test_dev_runs_the_readme_example_to_completion(shop: Shop) -> None:
    assert shop.dev.returncode == 0, shop.dev.stdout + shop.dev.stderr
    out = shop.dev.stdout
    for expected in ("process-order", "send-receipt", "reserve-inventory", "SLEEP", "SEND_EVENT"):
        assert expected in out
    assert "receipt for order o-1 sent" in out  # ctx.logger, in the live view
    assert out.count("RUN_COMPLETED") == 2  # the order and the receipt it triggered
    assert re.search(r'send-receipt .* RUN_COMPLETED +→ \{"sent":"o-1"\}', out)
    summary = out[out.index("Runs") :]
    assert summary.count("COMPLETED") == 2
    assert '"chargeId":"ch-o-1"' in summary


def test_dev_fails_when_the_sent_event_starts_nothing(cli: Cli) -> None:
    result = cli.run(
        "dev", "examples.shop:app", "--db", cli.db,
        "--send", "order/created", "--data", '{"orderId": "o-2", "amount": 0}', "--exit-when-done",
    )  # fmt: skip
    assert result.returncode == 1
    assert "started no runs" in result.stdout


def test_dev_logs_runs_live_and_stops_on_sigint(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    process = cli.start(
        "dev", "examples.shop:app", "--db", cli.db, "--send", "order/created", "--data", ORDER,
        output=log,
    )  # fmt: skip
    wait_until(
        lambda: "send-receipt" in log.read_text() and log.read_text().count("RUN_COMPLETED") == 2,
        "both runs to complete in the live log",
        process=process,
        output=log,
    )
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=TIMEOUT) == 0
    assert "Traceback" not in log.read_text()


# -- worker and send ---------------------------------------------------------------------------
def test_worker_runs_events_sent_by_send_and_stops_on_sigterm(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = cli.start(
        "worker", "examples.shop:app", "--db", cli.db, "--worker-id", "w-1", output=log
    )
    sent = cli.run(
        "send", "order/created", "--data", ORDER, "--app", "examples.shop:app", "--db", cli.db
    )
    assert sent.returncode == 0, sent.stderr
    assert "process-order" in sent.stdout

    def completed() -> list[str]:
        return [function_id for function_id, status in cli.statuses() if status == "COMPLETED"]

    wait_until(
        lambda: sorted(completed()) == ["process-order", "send-receipt"],
        "both runs to complete",
        process=worker,
        output=log,
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=TIMEOUT) == 0
    text = log.read_text()
    assert "worker w-1" in text
    assert "receipt for order o-1 sent [send-receipt " in text
    assert "stopped" in text


def test_send_prints_the_event_and_the_queued_runs(cli: Cli) -> None:
    sent = cli.run(
        "send", "order/created", "--data", ORDER, "--app", "examples.shop:app", STEPLINE_DB=cli.db
    )
    assert sent.returncode == 0, sent.stderr
    [event_line, run_line] = sent.stdout.splitlines()
    assert event_line.startswith("event ") and "order/created" in event_line
    run_id = run_line.split()[1]
    assert run_line.split()[2:] == ["process-order", "QUEUED"]
    listed = cli.run("runs", "list", "--status", "queued", STEPLINE_DB=cli.db)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout


def test_send_keeps_the_events_version(cli: Cli) -> None:
    sent = cli.run(
        "send",
        "order/created",
        "--data",
        ORDER,
        "--event-version",
        "2026-12-01.1",
        "--app",
        "examples.shop:app",
        STEPLINE_DB=cli.db,
    )
    assert sent.returncode == 0, sent.stderr
    event_id = sent.stdout.splitlines()[0].split()[1]
    shown = cli.run("events", "show", event_id, "--json", STEPLINE_DB=cli.db)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["v"] == "2026-12-01.1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"orderId": ', "--data is not valid JSON (Expecting value at line 1, column 13)"),
        ("[1, 2]", "--data must be a JSON object"),
    ],
)
def test_send_rejects_bad_json(cli: Cli, data: str, message: str) -> None:
    result = cli.run(
        "send", "order/created", "--data", data, "--app", "examples.shop:app", "--db", cli.db
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (cli.cwd / "x.db").exists()


def test_send_without_an_app_nor_a_database_asks_for_one(cli: Cli) -> None:
    result = cli.run("send", "order/created")
    assert result.returncode == 2
    assert "needs --app MODULE:APP (or STEPLINE_APP), or --db URL" in result.stderr
    assert not (cli.cwd / ".stepline").exists()


def test_send_with_only_a_database_says_no_registered_app_listens(cli: Cli) -> None:
    # events are environment-wide: with --db alone the event goes to the apps registered on the
    # database (tests/integration/test_cross_app_events.py); here none is
    result = cli.run("send", "order/created", "--db", cli.db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("event ")
    assert "no app whose workers registered on this database has a function triggered by" in (
        result.stderr
    )


# -- runs ----------------------------------------------------------------------------------------
def test_runs_list_shows_the_runs(shop: Shop) -> None:
    table = shop.cli.run("runs", "list", "--db", shop.cli.db)
    assert table.returncode == 0, table.stderr
    order = shop.run_of("process-order")
    assert order["run_id"] in table.stdout
    assert "send-receipt" in table.stdout and "COMPLETED" in table.stdout
    assert order["status"] == "COMPLETED"
    assert [s["id"] for s in order["steps"]] == [
        "validate", "reserve-inventory", "settle", "charge", "announce",
    ]  # fmt: skip
    assert shop.runs("--status", "FAILED") == []
    assert len(shop.runs("--limit", "1")) == 1


def test_runs_show_prints_the_run_its_timeline_and_steps(shop: Shop) -> None:
    run_id = shop.run_of("process-order")["run_id"]
    shown = shop.cli.run("runs", "show", run_id, "--db", shop.cli.db)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "process-order" in out and "COMPLETED" in out
    assert '"chargeId": "ch-o-1"' in out  # the output, pretty-printed
    for kind in ("RUN_QUEUED", "STEP_COMPLETED", "SLEEP", "SEND_EVENT", "RUN_COMPLETED"):
        assert kind in out
    assert "+0.0" in out  # relative times
    assert (
        out.index("History")
        < out.index("Steps")
        < out.index("reserve-inventory", out.index("Steps"))
    )
    by_suffix = shop.cli.run("runs", "show", run_id[-8:].lower(), "--db", shop.cli.db)
    assert by_suffix.returncode == 0 and run_id in by_suffix.stdout
    as_json = json.loads(shop.cli.run("runs", "show", run_id, "--db", shop.cli.db, "--json").stdout)
    assert as_json["run_id"] == run_id
    assert [h["kind"] for h in as_json["history"]][-1] == "RUN_COMPLETED"


def test_runs_show_unknown_run_is_one_clear_line(shop: Shop) -> None:
    result = shop.cli.run("runs", "show", "01NOSUCHRUN0000000000000000", "--db", shop.cli.db)
    assert result.returncode == 1
    # issue 6 "Which database": errors name the database
    assert result.stderr.strip() == (
        f"Error: no run '01NOSUCHRUN0000000000000000' (database {shop.cli.cwd / 'x.db'})"
    )


def test_runs_without_a_database_say_so(cli: Cli) -> None:
    result = cli.run("runs", "list")
    assert result.returncode == 2
    assert "pass --app MODULE:APP or --db URL" in result.stderr
    missing = cli.run("runs", "list", "--db", "nothere.db")
    assert missing.returncode == 1
    assert "no database at nothere.db" in missing.stderr
    assert not (cli.cwd / "nothere.db").exists()


# -- errors and version --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "code", "message"),
    [
        ("examples.shop", 2, "'examples.shop' is not MODULE:APP"),
        (
            "no_such_module:app",
            1,
            "cannot import 'no_such_module': no module named 'no_such_module'",
        ),
        ("examples.shop:nope", 1, "module 'examples.shop' has no attribute 'nope'"),
        ("examples.shop:charge", 1, "'examples.shop:charge' is a function, not a stepline.App"),
    ],
)
def test_a_bad_app_reference_is_one_clear_line(cli: Cli, ref: str, code: int, message: str) -> None:
    for command in (["dev", ref], ["worker", ref], ["runs", "list", "--app", ref]):
        result = cli.run(*command, "--db", cli.db)
        assert result.returncode == code, (command, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: {message}"), command


def test_an_app_module_that_raises_names_the_file_and_line(cli: Cli) -> None:
    (cli.cwd / "broken.py").write_text("import stepline\n\nratio = 1 / 0\n")
    result = cli.run("worker", "broken:app", "--db", cli.db)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: error while importing 'broken': broken.py:3: ZeroDivisionError: division by zero"
    )


def test_version(cli: Cli) -> None:
    result = cli.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "stepline, version 0.1.0"


def test_runs_purge_deletes_ended_runs_before_a_time(cli: Cli) -> None:
    done = cli.run(
        "dev",
        "examples.shop:app",
        "--db",
        cli.db,
        "--send",
        "order/created",
        "--data",
        '{"orderId": "o-7", "amount": 10}',
        "--exit-when-done",
    )
    assert done.returncode == 0, done.stderr
    kept = cli.run("runs", "purge", "--before", "1d", "--db", cli.db)
    assert kept.returncode == 0, kept.stderr
    assert "Deleted 0 runs" in kept.stdout
    assert len(cli.json("runs", "list", "--db", cli.db)) == 2
    purged = cli.run("runs", "purge", "--before", "0s", "--db", cli.db)
    assert "Deleted 2 runs" in purged.stdout
    assert cli.json("runs", "list", "--db", cli.db) == []
    bad = cli.run("runs", "purge", "--before", "soon", "--db", cli.db)
    assert bad.returncode == 2
    assert "--before must be" in bad.stderr
