"""``stepline apps list`` and ``stepline apps remove``: the apps registered on a database, and
taking a decommissioned one out of the trigger catalog (its waiting events dropped, no more
events handed to it). In-process (click's runner) on real SQLite files, with real workers.

Before, an app none of whose workers would start again stayed in the catalog for good, and
every event its functions listened to added an inbox row for it that no one took.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import stepline
from stepline import App, Context, Event
from stepline.cli import cli


def invoke(*args: str) -> Result:
    """Run one command in this process; stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


def emails_app(db: str) -> App:
    app = App("emails", db=db)

    @app.function(id="receipt", trigger=stepline.TriggerEvent("order/placed"))
    async def receipt(ctx: Context) -> str:
        return "sent"

    return app


def test_a_decommissioned_app_is_listed_then_removed(db: str) -> None:
    emails, billing = emails_app(db), App("billing", db=db)

    async def registered_once() -> None:
        async with emails.worker():  # registers app emails, then stops (and unregisters)
            pass

    try:
        asyncio.run(registered_once())
        billing.send([Event(name="order/placed"), Event(name="order/placed")])
        listed = invoke("apps", "list", "--db", db, "--json")
        assert listed.exit_code == 0, listed.stderr
        assert json.loads(listed.stdout) == [
            {
                "app_id": "emails",
                "functions": [{"id": "receipt", "events": ["order/placed"]}],
                "live_workers": 0,
                "last_seen_at": None,
                "waiting": 2,
            }
        ]
        table = invoke("apps", "list", "--db", db).stdout
        assert "receipt <- order/placed" in table
        assert "none registered" in table

        removed = invoke("apps", "remove", "emails", "--db", db)
        assert removed.exit_code == 0, removed.stderr
        assert removed.stdout == "Removed app emails: 1 trigger, 2 waiting events dropped.\n"
        [outcome] = asyncio.run(billing.send_with_outcomes(Event(name="order/placed")))
        assert outcome.handed_to == ()
        assert json.loads(invoke("apps", "list", "--db", db, "--json").stdout) == []
        assert invoke("apps", "list", "--db", db).stdout == "No apps registered.\n"

        again = invoke("apps", "remove", "emails", "--db", db)
        assert again.exit_code == 1
        assert again.stderr == (
            "Error: no app 'emails' is registered (registered: none) "
            f"(database {Path(db.removeprefix('sqlite:///')).resolve()})\n"
        )
    finally:
        emails.close()
        billing.close()


def test_an_app_with_a_live_worker_is_removed_only_with_force(db: str) -> None:
    emails = emails_app(db)

    async def while_alive() -> tuple[Result, Result, Result]:
        async with emails.worker():
            listed = await asyncio.to_thread(invoke, "apps", "list", "--db", db, "--json")
            refused = await asyncio.to_thread(invoke, "apps", "remove", "emails", "--db", db)
            forced = await asyncio.to_thread(
                invoke, "apps", "remove", "emails", "--db", db, "--force"
            )
        return listed, refused, forced

    try:
        listed, refused, forced = asyncio.run(while_alive())
    finally:
        emails.close()
    assert json.loads(listed.stdout)[0]["live_workers"] == 1
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "Error: app 'emails' has 1 live worker: stop them first (a worker that starts "
        "registers its app again), or pass --force"
    )
    assert refused.stderr.count("\n") == 1
    assert forced.exit_code == 0, forced.stderr
    assert forced.stdout == "Removed app emails: 1 trigger, 0 waiting events dropped.\n"
