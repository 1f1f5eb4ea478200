"""``stepline events list`` and ``stepline events show``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from effects_app import payment_app
from stepline import App, Context, Event, TriggerEvent
from stepline.cli import cli as stepline_cli
from stepline.testing import MockClock, TestEngine


def _db_with_events(tmp_path: Path) -> tuple[str, list[str]]:
    db = f"sqlite:///{tmp_path / 'ev.db'}"
    app = App("evapp", db=db)

    @app.function(id="on-order", trigger=TriggerEvent("order/created"))
    async def on_order(ctx: Context) -> None:
        return None

    ids = app.send([Event("order/created", {"orderId": 1}), Event("audit", {"x": 2}, id="a-1")])
    ids += app.send(Event("audit", {"x": 3}, id="a-1"))
    app.close()
    return db, ids


def test_events_list(tmp_path: Path) -> None:
    db, ids = _db_with_events(tmp_path)
    result = CliRunner().invoke(stepline_cli, ["events", "list", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [e["id"] for e in found] == list(reversed(ids))
    assert [e["duplicate"] for e in found] == [True, False, False]
    named = CliRunner().invoke(stepline_cli, ["events", "list", "--db", db, "--name", "audit"])
    assert named.exit_code == 0
    assert "(duplicate)" in named.stdout and "order/created" not in named.stdout
    empty = CliRunner().invoke(
        stepline_cli, ["events", "list", "--db", db, "--since", "2100-01-01T00:00:00+00:00"]
    )
    assert "No events." in empty.stdout


def test_events_show(tmp_path: Path) -> None:
    db, ids = _db_with_events(tmp_path)
    result = CliRunner().invoke(stepline_cli, ["events", "show", ids[0], "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["name"] == "order/created" and shown["data"] == {"orderId": 1}
    assert [r["function_id"] for r in shown["runs"]] == ["on-order"]
    table = CliRunner().invoke(stepline_cli, ["events", "show", ids[1], "--db", db])
    assert "It started, resumed and cancelled no run." in table.stdout
    assert "sender id a-1" in table.stdout
    missing = CliRunner().invoke(stepline_cli, ["events", "show", "nope", "--db", db])
    assert missing.exit_code == 1
    assert "no event 'nope'" in missing.stderr


async def _resumed_and_cancelled(path: Path) -> tuple[str, str, list[str]]:
    """Two runs waiting for a payment: one paid (resumed), one cancelled (cancel_on). Returns
    the payment's and the cancellation's event ids and the two runs."""
    app = payment_app("fxapp")
    # no autojump: the waits must not time out while the test sends the next events
    clock = MockClock(autojump=False)
    async with TestEngine(app, store="sqlite", path=path, clock=clock) as t:
        created = await t.send([Event("order/created", {"orderId": f"o-{i}"}) for i in (1, 2)])
        runs = [r.run_id for e in created for r in await t.runs(event_id=e)]
        for run_id in runs:
            await t.wait_for_status(run_id, "WAITING")
        [paid] = await t.send(Event("payment/received", {"orderId": "o-1"}))
        [cancel] = await t.send(Event("order/cancelled", {"orderId": "o-2"}))
        assert (await t.wait_for_run(runs[0])).status == "COMPLETED"
        assert (await t.wait_for_run(runs[1])).status == "CANCELLED"
    return paid, cancel, runs


def test_events_show_the_runs_an_event_resumed_and_cancelled(tmp_path: Path) -> None:
    # issue 9: an event shows every run it started, resumed (a wait) or cancelled (cancel_on)
    path = tmp_path / "fx.db"
    paid, cancel, runs = asyncio.run(_resumed_and_cancelled(path))
    db = f"sqlite:///{path}"
    expected = {paid: ("resumed", runs[0]), cancel: ("cancelled", runs[1])}
    for event_id, (effect, run_id) in expected.items():
        shown = CliRunner().invoke(stepline_cli, ["events", "show", event_id, "--db", db, "--json"])
        assert shown.exit_code == 0, shown.output
        [run] = json.loads(shown.stdout)["runs"]
        assert (run["effect"], run["run_id"], run["function_id"]) == (
            effect,
            run_id,
            "await-payment",
        )
        table = CliRunner().invoke(stepline_cli, ["events", "show", event_id, "--db", db])
        assert "Runs it started, resumed or cancelled" in table.stdout
        assert effect in table.stdout and run_id in table.stdout
