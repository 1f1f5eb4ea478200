"""Retry backoff on the command line (issue 7): ``stepline dev`` retries fast, a production
``stepline worker`` on Inngest's schedule (15 s first)."""

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


@app.function(id="flaky", trigger=TriggerEvent("go"), retries=1)
async def flaky(ctx: Context) -> None:
    await ctx.step.run("call", boom)
"""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    (tmp_path / "flaky.py").write_text(FLAKY_APP)
    yield from cli_in(tmp_path)


def first_retry_delay(cli: Cli) -> float | None:
    """Seconds between the first failed attempt and the retry it scheduled (None: not yet)."""
    runs: list[dict[str, Any]] = cli.json("runs", "list", "--db", cli.db)
    if not runs:
        return None
    run = cli.json("runs", "show", runs[0]["run_id"], "--db", cli.db)
    failed = [h for h in run["history"] if h["kind"] == "STEP_FAILED" and "retry_at" in h["data"]]
    if not failed:
        return None
    at = datetime.fromisoformat(failed[0]["at"]).timestamp()
    return float(failed[0]["data"]["retry_at"]) - at


def test_stepline_dev_retries_within_seconds(cli: Cli) -> None:
    # issue 7 backoff: fast under `stepline dev` (docs/inngest.md, a deliberate difference)
    result = cli.run("dev", "flaky:app", "--db", cli.db, "--send", "go", "--exit-when-done")
    assert result.returncode == 1, result.stderr  # the run failed after its retry
    delay = first_retry_delay(cli)
    assert delay is not None and 1 <= delay <= 2.1


def test_stepline_worker_retries_on_inngests_schedule(cli: Cli, tmp_path: Path) -> None:
    # issue 7 backoff; Inngest: pkg/backoff/backoff.go (15 s, then 30 s ..., + up to 30 s)
    log = tmp_path / "worker.log"
    worker = cli.start("worker", "flaky:app", "--db", cli.db, output=log)
    sent = cli.run("send", "go", "--app", "flaky:app", "--db", cli.db)
    assert sent.returncode == 0, sent.stderr
    found: list[float] = []

    def retry_scheduled() -> bool:
        delay = first_retry_delay(cli)
        if delay is not None:
            found.append(delay)
        return delay is not None

    wait_until(retry_scheduled, "the first retry to be scheduled", process=worker, output=log)
    assert 15 <= found[0] <= 45.1
