"""Review R2 (fourteenth stop): SQLite migration 26 (wait 98a1bf7, branch) undoes 25's fold:
a sender writes a resolution's effects itself again, and no lease or read writes or derives
them from a mark any more. ``STOP_WORKERS_FIRST`` refuses the migration while WORKERS of 25 are
alive, but a process that only sends (a web server's ``App.send``) opened before the migration
keeps schema 25's statements: it resolves a wait by writing the mark naming its event
(``waits_resolved.event_id``, ``at``) and the run's wake, nothing else. After 26 nothing writes
those effects: the run is leased, finds its wait step still waiting and the wait no longer
pending, and stays WAITING for ever (the wait, marked resolved, never times out either); the
event is lost to it.

The schema-25 sender is emulated with its exact statements (``RESOLVE_WAIT`` of 9b26663's
store/sqlite/_wait_queries.py, then ``WAKE``); review/mig26/run.sh runs a real 9b26663 sender
across the migration (7 of its 7 resolved runs left WAITING). The test passes on main (25: the
lease folds the mark) and when 26 refuses such a write (e.g. a trigger raising on an insert
that names an event: the old sender's send fails, nothing is lost in silence)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from _polling import until

from stepline import App, Context, Event, TriggerEvent

# the statements of a schema-25 sender's resolution (9b26663)
RESOLVE_WAIT_25 = """
INSERT OR IGNORE INTO waits_resolved (run_id, wait_id, event_id, at)
SELECT run_id, wait_id, ?3, ?4 FROM waits WHERE run_id = ?1 AND wait_id = ?2"""
WAKE_25 = """
UPDATE queue SET wake = 1,
       due_at = CASE WHEN lease_owner IS NULL THEN ? ELSE due_at END
WHERE run_id = ?"""


def _shop(path: Path) -> App:
    app = App("shop", db=f"sqlite:///{path}")

    @app.function(id="checkout", trigger=TriggerEvent("order/created"))
    async def checkout(ctx: Context) -> Any:
        paid = await ctx.step.wait_for_event(
            "payment", event="payment/received", match="data.orderId", timeout="1d"
        )
        return None if paid is None else paid.data

    return app


async def test_a_wait_a_sender_of_schema_25_resolves_after_the_migration_is_not_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    shop = _shop(path)
    try:
        async with shop.worker(concurrency=2):
            [created] = await shop.send_async(Event("order/created", {"orderId": "o1"}))
            [run] = await shop.runs(event_id=created)

            async def waiting() -> bool:
                found = await shop.get_run(run.run_id)
                return found is not None and found.status == "WAITING"

            await until("the run to wait", waiting)
        # the payment event stored (it matches no wait: another order), as the old sender's
        # own ingest stores it before it resolves the wait
        [paid] = await shop.send_async(Event("payment/received", {"orderId": "o2", "amount": 7}))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            [(internal_id,)] = conn.execute(
                "SELECT internal_id FROM events WHERE sender_id = ? OR internal_id = ?",
                (paid, paid),
            ).fetchall()
            [(wait_id,)] = conn.execute(
                "SELECT wait_id FROM waits WHERE run_id = ?", (run.run_id,)
            ).fetchall()
            now = time.time()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(RESOLVE_WAIT_25, (run.run_id, wait_id, internal_id, now))
                conn.execute(WAKE_25, (now, run.run_id))
                conn.execute("COMMIT")
            except sqlite3.DatabaseError:  # refused: the old sender's send fails, loudly
                conn.execute("ROLLBACK")
                return
        finally:
            conn.close()
        async with shop.worker(concurrency=2):

            async def ended() -> bool:
                found = await shop.get_run(run.run_id)
                return found is not None and found.status == "COMPLETED"

            await until("the resumed run to complete with the old sender's event", ended)
        found = await shop.get_run(run.run_id)
        assert found is not None and found.output == {"orderId": "o2", "amount": 7}
    finally:
        shop.close()
