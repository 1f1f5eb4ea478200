"""``stepline events list`` and ``stepline events show``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from stepline import App, Context, Event, TriggerEvent
from stepline.cli import cli as stepline_cli


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
    assert "It started no run." in table.stdout and "sender id a-1" in table.stdout
    missing = CliRunner().invoke(stepline_cli, ["events", "show", "nope", "--db", db])
    assert missing.exit_code == 1
    assert "no event 'nope'" in missing.stderr
