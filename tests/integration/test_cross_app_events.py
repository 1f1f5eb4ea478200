"""Events are environment-wide, as in Inngest: an event one app sends starts the runs of every
app's functions listening to it, on one database, across processes.

Before, ``Engine.plan`` looked only at the sending process's own functions, so two apps sharing
a database never saw each other's events as triggers (``stepline send`` said "started no runs").
Now each worker registers its app's triggers in the store's catalog; an ingest hands the event
to the other apps' listening functions (an inbox row each), and a worker of that app takes it
in its lease job and starts the run with its own definition (``if_``, flow control).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from _subprocesses import Subprocesses, poll
from click.testing import CliRunner

from stepline import App, Event
from stepline.cli import cli

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
APP_FILE = HERE / "cross_app.py"
sys.path.insert(0, str(HERE))
import cross_app  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return str(tmp_path / "shared.db")


class Receivers(Subprocesses):
    """Worker processes of the ``emails`` app."""

    label = "emails"

    def start(self, db: str, worker_id: str) -> subprocess.Popen[bytes]:
        return self.spawn(
            [str(APP_FILE), "worker"], XAPP_DB=db, XAPP_WORKER_ID=worker_id, XAPP_DIR=str(self.dir)
        )

    def stop(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=20) for proc in self.procs]


async def registered(app: App, procs: Receivers, count: int) -> None:
    async def check() -> bool:
        live = [w for w in await app.live_workers() if w.app_id == "emails"]
        return len(live) == count

    await poll("the emails workers to register", check, time.monotonic() + 30, procs)


@pytest.mark.timeout(90)
async def test_an_event_starts_another_apps_function_in_another_process(
    tmp_path: Path, shared_db: str
) -> None:
    procs = Receivers(tmp_path)
    billing = cross_app.billing(shared_db)
    emails = cross_app.emails(shared_db)  # reads only: its worker is the other process
    try:
        procs.start(shared_db, "emails-1")
        await registered(billing, procs, 1)
        outcomes = await billing.send_with_outcomes(
            [
                Event("order/placed", {"order": "o1"}),
                Event("user/signup", {"user": "u1", "plan": "pro"}),
                Event("user/signup", {"user": "u1", "plan": "pro"}),  # emails' idempotency
                Event("user/signup", {"user": "u2", "plan": "free"}),  # emails' if_ says no
            ]
        )
        placed, first, second, free = outcomes
        assert len(placed.run_ids) == 1  # billing's own charge, planned by the sender
        assert placed.handed_to == (("emails", "receipt"),)
        assert [o.handed_to for o in (first, second, free)] == [(("emails", "welcome"),)] * 3
        assert first.run_ids == second.run_ids == free.run_ids == ()

        async def settled() -> bool:
            runs = await emails.runs(limit=100)
            return len(runs) == 2 and all(r.done for r in runs)

        await poll("the emails runs to end", settled, time.monotonic() + 30, procs)
        runs = {r.function_id: r for r in await emails.runs(limit=100)}
        receipt, welcome = runs["receipt"], runs["welcome"]
        assert (receipt.status, receipt.app_id, receipt.worker_id) == (
            "COMPLETED",
            "emails",
            "emails-1",
        )
        assert receipt.output["order"] == "o1"
        assert receipt.event_ids == [placed.event_id]
        assert (welcome.status, welcome.output) == ("COMPLETED", {"welcomed": "u1"})
        assert welcome.event_ids == [first.event_id]
        # the second u1 signup was skipped by emails' idempotency, recorded as a skip
        skips = [(s.event_id, s.function_id, s.reason) for s in await emails.skipped()]
        assert skips == [(second.event_id, "welcome", "idempotency")]
        # billing's own run is billing's (no billing worker runs: it waits for one)
        [charge] = await billing.runs(function_id="charge")
        assert (charge.app_id, charge.status) == ("billing", "QUEUED")
        assert await emails.runs(function_id="charge", all_apps=False) == []
        assert procs.stop() == [0]
    finally:
        procs.close()
        billing.close()
        emails.close()


@pytest.mark.timeout(120)
async def test_two_receiving_workers_take_each_handed_event_exactly_once(
    tmp_path: Path, shared_db: str
) -> None:
    procs = Receivers(tmp_path)
    billing = cross_app.billing(shared_db)
    emails = cross_app.emails(shared_db)
    total = 60
    try:
        procs.start(shared_db, "emails-1")
        procs.start(shared_db, "emails-2")
        await registered(billing, procs, 2)
        sent: list[str] = []
        for i in range(0, total, 6):  # several transactions: both workers see rows arrive
            batch = [Event("order/placed", {"order": f"o{n}"}) for n in range(i, i + 6)]
            sent += await billing.send_async(batch)

        async def settled() -> bool:
            runs = await emails.runs(function_id="receipt", limit=1000)
            return len(runs) >= total and all(r.done for r in runs)

        await poll("every receipt to end", settled, time.monotonic() + 60, procs)
        runs = await emails.runs(function_id="receipt", limit=1000)
        assert len(runs) == total
        per_event = Counter(event_id for r in runs for event_id in r.event_ids)
        assert per_event == Counter(sent)  # one run per event: no row taken twice
        assert {r.status for r in runs} == {"COMPLETED"}
        lines = (tmp_path / "receipts.log").read_text().split()
        assert len(lines) == 2 * total  # each step body ran once
        assert procs.stop() == [0, 0]
    finally:
        procs.close()
        billing.close()
        emails.close()


@pytest.mark.timeout(90)
def test_stepline_send_says_which_other_apps_functions_it_handed_the_event_to(
    tmp_path: Path,
) -> None:
    # before: "Warning: the event started nothing: no function of app 'billing' is triggered"
    db = str(tmp_path / "shared.db")
    procs = Receivers(tmp_path)
    emails = cross_app.emails(db)
    try:
        procs.start(db, "emails-1")
        deadline = time.monotonic() + 30
        while not [w for w in asyncio.run(emails.live_workers()) if w.app_id == "emails"]:
            assert time.monotonic() < deadline and procs.died() is None, procs.output()
            time.sleep(0.02)  # real time: the poll interval; the deadline bounds it
        for user, sender in (("u8", ["--app", "cross_app:billing_app"]), ("u9", [])):
            # from billing's code, and from no app's (--db alone: to every registered app)
            args = ["send", "user/signup", "--data", f'{{"user": "{user}", "plan": "pro"}}']
            result = CliRunner().invoke(cli, [*args, *sender, "--db", db], catch_exceptions=False)
            assert result.exit_code == 0, result.output
            assert "handed to welcome of app 'emails': its workers start the run" in result.stdout
            assert "started nothing" not in result.stderr
        while len([r for r in asyncio.run(emails.runs()) if r.status == "COMPLETED"]) < 2:
            assert time.monotonic() < deadline and procs.died() is None, procs.output()
            time.sleep(0.02)  # real time: the poll interval; the deadline bounds it
        assert procs.stop() == [0]
    finally:
        procs.close()
        emails.close()
