"""``stepline dev`` takes the flags of Inngest's dev server that change how it runs functions
(``cmd/devserver/cmd.go``): ``--retry-interval SECONDS`` (a linear backoff: every retry after
the same wait, ``pkg/backoff.GetLinearBackoffFunc``, no jitter), ``--tick MS`` (how often the
executor polls the queue for work) and ``--queue-workers N`` (``--concurrency``).

issue 10, "Dev and production modes": a drop-in for Inngest's dev server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_cli import Cli, cli_in, wait_until

from stepline.cli import cli as stepline

FLAKY_APP = """
from stepline import App, Context, TriggerEvent

app = App("flaky")


def boom() -> None:
    raise ValueError("down")


@app.function(id="flaky", trigger=TriggerEvent("go"), retries=2)
async def flaky(ctx: Context) -> None:
    await ctx.step.run("call", boom)


@app.function(id="hello", trigger=TriggerEvent("hi"))
async def hello(ctx: Context) -> str:
    return "hello " + ctx.event.data["name"]
"""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    (tmp_path / "flaky.py").write_text(FLAKY_APP)
    yield from cli_in(tmp_path)


def retry_delays(cli: Cli) -> list[float]:
    """Seconds between each failed attempt of the run and the retry it scheduled."""
    [listed] = cli.json("runs", "list", "--db", cli.db)
    run: dict[str, Any] = cli.json("runs", "show", listed["run_id"], "--db", cli.db)
    return [
        float(h["data"]["retry_at"]) - datetime.fromisoformat(h["at"]).timestamp()
        for h in run["history"]
        if h["kind"] == "STEP_FAILED" and h["data"].get("retry_at") is not None
    ]


def test_retry_interval_retries_after_the_same_wait_each_time(cli: Cli) -> None:
    result = cli.run(
        "dev", "flaky:app", "--db", cli.db, "--retry-interval", "1", "--send", "go",
        "--exit-when-done",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the run failed once its retries were spent
    # two retries, each 1 s after its failure: linear, without jitter (stepline dev's own
    # backoff would wait 1 s then 2 s, plus up to 1 s each)
    assert retry_delays(cli) == [pytest.approx(1.0, abs=1e-3)] * 2


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--retry-interval", "0"),
        ("--retry-interval", "-1"),
        ("--retry-interval", "soon"),
        ("--tick", "0"),
        ("--tick", "1.5"),
        ("--queue-workers", "0"),
    ],
)
def test_the_flags_take_whole_numbers_from_1(flag: str, value: str) -> None:
    # refused before anything starts (no app is loaded, no database opened)
    result = CliRunner().invoke(stepline, ["dev", "nowhere:app", flag, value])
    assert result.exit_code == 2, result.output
    assert flag in result.output


def test_tick_is_how_often_the_worker_looks_for_work_other_processes_made(
    cli: Cli, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    dev = cli.start("dev", "flaky:app", "--db", cli.db, "--tick", "40", output=log)
    wait_until(lambda: "tick 40 ms" in log.read_text(), "the banner", process=dev, output=log)
    # a run started by another process on the database: the worker finds it at a tick
    sent = cli.run("send", "hi", "--data", '{"name": "ada"}', "--app", "flaky:app", "--db", cli.db)
    assert sent.returncode == 0, sent.stderr

    def completed() -> bool:
        runs = cli.statuses("hello")
        return bool(runs) and runs[0][1] == "COMPLETED"

    wait_until(completed, "the run the other process started", process=dev, output=log)
    [run] = cli.json("runs", "list", "--db", cli.db, "--function", "hello")
    assert run["output"] == "hello ada"


HELD_APP = """
import os
import time
from functools import partial

from stepline import App, Context, TriggerEvent

app = App("held")


def until_released(path: str) -> None:
    deadline = time.monotonic() + 120
    while not os.path.exists(path):  # the test releases the step by creating the file
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)  # real time: the poll interval; the deadline bounds it


@app.function(id="held", trigger=TriggerEvent("hold"))
async def held(ctx: Context) -> None:
    await ctx.step.run("held", partial(until_released, ctx.event.data["until"]))


@app.function(id="hello", trigger=TriggerEvent("hi"))
async def hello(ctx: Context) -> str:
    return "hello " + ctx.event.data["name"]
"""


def test_a_long_tick_leaves_other_processes_runs_until_the_next_look(
    cli: Cli, tmp_path: Path
) -> None:
    # the converse of the test above, so that one cannot pass with --tick ignored: with a tick
    # of a minute, a run another process starts stays queued (nothing in this process wakes
    # the worker for it) while runs sent by stepline dev itself run at once. The worker's first
    # look leases whatever is due then: a run made before it is the look's, not the tick's
    # (a race the test lost under load). So the first look is seen to have been made: it
    # leases the held run, sent before dev started, whose step runs until the test releases it
    (tmp_path / "held.py").write_text(HELD_APP)
    release = tmp_path / "release"
    hold = json.dumps({"until": str(release)})
    sent = cli.run("send", "hold", "--data", hold, "--app", "held:app", "--db", cli.db)
    assert sent.returncode == 0, sent.stderr
    log = tmp_path / "dev.log"
    dev = cli.start("dev", "held:app", "--db", cli.db, "--tick", "60000", output=log)

    def looked() -> bool:  # the held run leased and running: the first look was made
        return cli.statuses("held") == [("held", "RUNNING")]

    wait_until(looked, "the first look", process=dev, output=log)
    sent = cli.run("send", "hi", "--data", '{"name": "bo"}', "--app", "held:app", "--db", cli.db)
    assert sent.returncode == 0, sent.stderr
    for _ in range(3):  # three more commands' time: far past the default 250 ms tick
        [run] = cli.json("runs", "list", "--db", cli.db, "--function", "hello")
        assert run["status"] == "QUEUED", run
    release.touch()  # the held pass ends: the worker looks again (and runs hello)

    def done() -> bool:
        return cli.statuses("held") + cli.statuses("hello") == [
            ("held", "COMPLETED"),
            ("hello", "COMPLETED"),
        ]

    wait_until(done, "both runs", process=dev, output=log)


def test_queue_workers_is_concurrency(cli: Cli, tmp_path: Path) -> None:
    # Inngest's dev server: --queue-workers, the executor's workers; Stepline's: --concurrency
    log = tmp_path / "dev.log"
    dev = cli.start("dev", "flaky:app", "--db", cli.db, "--queue-workers", "7", output=log)
    wait_until(lambda: "concurrency 7 ·" in log.read_text(), "the banner", process=dev, output=log)
