"""`stepline functions list --app` lists the functions of the SDK apps synced to the app's
database too (as a server registers them at start), on SQLite and PostgreSQL. Before, only the
app's own functions: an SDK app's were listed only by a running server (`--url`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from _stepline_dev import tiny_registration
from click.testing import CliRunner

from stepline import App
from stepline.cli import cli
from stepline.drivers.inngest import SdkApps

APP_MODULE = """
from stepline import App, Context, TriggerEvent

app = App("listed")


@app.function(id="native", trigger=TriggerEvent("n/x"))
async def native(ctx: Context) -> None:
    return None
"""


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "listed.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
def test_functions_list_shows_the_synced_sdk_apps_functions(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("listed", db=db)
    try:
        asyncio.run(SdkApps(app).register(tiny_registration()))
    finally:
        app.close()
    (tmp_path / "listed_app.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    shown = CliRunner().invoke(
        cli, ["functions", "list", "--app", "listed_app:app", "--db", db, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    listed: list[dict[str, Any]] = json.loads(shown.output)
    by_id = {f["id"]: f for f in listed}
    assert set(by_id) == {"native", "tiny-a"}
    assert by_id["tiny-a"]["sdk_app"]["name"] == "tiny"
    assert by_id["native"]["sdk_app"] is None
    table = CliRunner().invoke(cli, ["functions", "list", "--app", "listed_app:app", "--db", db])
    assert "tiny-a" in table.output and "tiny/a" in table.output
