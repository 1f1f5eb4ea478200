"""``stepline dev`` takes the flags of Inngest's dev server that change how it runs functions
(``cmd/devserver/cmd.go``): ``--retry-interval SECONDS`` (a linear backoff: every retry after
the same wait, ``pkg/backoff.GetLinearBackoffFunc``, no jitter) and ``--tick MS`` (how often the
executor polls the queue for work).

issue 10, "Dev and production modes": a drop-in for Inngest's dev server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_cli import Cli, cli_in, wait_until

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


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_retry_interval_must_be_a_whole_number_of_seconds_from_1(cli: Cli, value: str) -> None:
    result = cli.run("dev", "flaky:app", "--db", cli.db, "--retry-interval", value)
    assert result.returncode == 2, result.stderr
    assert "--retry-interval" in result.stderr


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
        runs = cli.json("runs", "list", "--db", cli.db, "--function", "hello")
        return bool(runs) and runs[0]["status"] == "COMPLETED"

    wait_until(completed, "the run the other process started", process=dev, output=log)
    [run] = cli.json("runs", "list", "--db", cli.db, "--function", "hello")
    assert run["output"] == "hello ada"


def test_tick_must_be_a_whole_number_of_milliseconds_from_1(cli: Cli) -> None:
    result = cli.run("dev", "flaky:app", "--db", cli.db, "--tick", "0")
    assert result.returncode == 2, result.stderr
    assert "--tick" in result.stderr
