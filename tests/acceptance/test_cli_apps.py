"""Two apps on one database as real processes, and runs that wait for a worker, from the CLI.

issue 6 item 2: runs carry their app; a worker runs only the functions it registered; a run no
live worker can run waits, shown by ``runs show`` and listed by ``runs list --waiting-for-worker``.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import TIMEOUT, Cli, cli_in, wait_until

APP = """
import stepline
from stepline import App, Context

app = App("{app_id}")


@app.function(id="nap", trigger=stepline.TriggerEvent("{event}"))
async def nap(ctx: Context) -> str:
    await ctx.step.run("first", lambda: "{app_id}")
    await ctx.step.sleep("long", "1h")
    return "{app_id}"
"""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A CLI runner in a directory holding two apps, each with a function "nap"."""
    (tmp_path / "shop.py").write_text(APP.format(app_id="shop", event="shop/nap"))
    (tmp_path / "billing.py").write_text(APP.format(app_id="billing", event="billing/nap"))
    yield from cli_in(tmp_path)


def send(cli: Cli, app: str, name: str) -> str:
    sent = cli.run("send", name, "--app", f"{app}:app", "--db", cli.db)
    assert sent.returncode == 0, sent.stderr
    [run_id] = [line.split()[1] for line in sent.stdout.splitlines() if line.startswith("  run ")]
    return run_id


def show(cli: Cli, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = cli.json("runs", "show", run_id, "--db", cli.db)
    return shown


def test_two_app_processes_share_a_database_and_waiting_runs_are_shown(
    cli: Cli, tmp_path: Path
) -> None:
    # issue 6 item 2
    shop_run = send(cli, "shop", "shop/nap")
    billing_run = send(cli, "billing", "billing/nap")
    waiting = cli.json("runs", "list", "--waiting-for-worker", "--db", cli.db)
    assert sorted(r["run_id"] for r in waiting) == sorted([shop_run, billing_run])
    assert all(r["waiting_for_worker"] and r["status"] == "QUEUED" for r in waiting)
    text = cli.run("runs", "show", shop_run, "--db", cli.db).stdout
    assert re.search(
        r"waiting +for a worker: no live worker has function 'nap' of app 'shop'", text
    )
    listed = cli.run("runs", "list", "--db", cli.db, COLUMNS="200").stdout
    assert re.search(rf"{shop_run} +nap +QUEUED \(no worker\)", listed), listed

    shop_log = tmp_path / "shop.log"
    shop = cli.start(
        "worker", "shop:app", "--db", cli.db, output=shop_log, STEPLINE_WORKER_ID="w-shop"
    )
    wait_until(
        lambda: cli.status(shop_run) == "SLEEPING",
        "shop's run to sleep",
        process=shop,
        output=shop_log,
    )
    # shop's worker never touches billing's run of its own "nap": it waits for billing's
    assert [
        r["run_id"] for r in cli.json("runs", "list", "--waiting-for-worker", "--db", cli.db)
    ] == [billing_run]
    billing_log = tmp_path / "billing.log"
    billing = cli.start(
        "worker", "billing:app", "--db", cli.db, output=billing_log, STEPLINE_WORKER_ID="w-billing"
    )
    wait_until(
        lambda: cli.status(billing_run) == "SLEEPING",
        "billing's run to sleep",
        process=billing,
        output=billing_log,
    )
    assert cli.json("runs", "list", "--waiting-for-worker", "--db", cli.db) == []
    for run_id, app_id in ((shop_run, "shop"), (billing_run, "billing")):
        run = show(cli, run_id)
        assert (run["app_id"], run["worker_id"]) == (app_id, f"w-{app_id}")
        assert run["steps"][0]["output"] == app_id
        by_kind = {h["kind"]: h for h in run["history"]}
        assert by_kind["RUN_QUEUED"]["worker_id"] is None
        assert by_kind["RUN_STARTED"]["worker_id"] == f"w-{app_id}"
        assert by_kind["STEP_COMPLETED"]["worker_id"] == f"w-{app_id}"
    for process in (shop, billing):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
    assert "Traceback" not in shop_log.read_text() + billing_log.read_text()


def test_pause_cancel_and_list_with_app_act_on_that_apps_function_only(cli: Cli) -> None:
    # issue 6 item 2: `functions pause f --app a1:app` showed a2's f "paused (2 held)", and
    # `runs cancel --function f --app a1:app --yes` cancelled a2's runs of f too
    shop_run = send(cli, "shop", "shop/nap")
    billing_run = send(cli, "billing", "billing/nap")
    paused = cli.run("functions", "pause", "nap", "--app", "shop:app", "--db", cli.db)
    assert paused.returncode == 0, paused.stderr
    [billing_nap] = cli.json("functions", "list", "--app", "billing:app", "--db", cli.db)
    assert billing_nap["paused"] is False
    [shop_nap] = cli.json("functions", "list", "--app", "shop:app", "--db", cli.db)
    assert (shop_nap["paused"], shop_nap["held_runs"]) == (True, 1)
    own = cli.json("runs", "list", "--app", "shop:app", "--db", cli.db)
    assert [r["run_id"] for r in own] == [shop_run]
    every = cli.json("runs", "list", "--app", "shop:app", "--all-apps", "--db", cli.db)
    assert sorted(r["run_id"] for r in every) == sorted([shop_run, billing_run])
    assert len(cli.json("runs", "list", "--db", cli.db)) == 2  # --db alone: every app's
    cancelled = cli.json(
        "runs", "cancel", "--function", "nap", "--app", "shop:app", "--yes", "--db", cli.db
    )
    assert cancelled == {"cancelled": [shop_run]}
    assert show(cli, billing_run)["status"] == "QUEUED"
    assert show(cli, shop_run)["status"] == "CANCELLED"
