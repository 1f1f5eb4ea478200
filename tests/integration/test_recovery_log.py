"""Crash recovery is announced: a worker that reclaims its own leases (restarted with the same id)
or takes over another worker's expired leases says so in its log (SQLite and PostgreSQL: the
leases are the store's, taken through its protocol; the memory store lives in one process)."""

from __future__ import annotations

import logging

import pytest

import stepline
from stepline import App, Context, Event

pytestmark = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


def _app(db: str) -> App:
    app = App("recovery", db=db)

    @app.function(id="noop", trigger=stepline.TriggerEvent("noop/go"))
    async def noop(ctx: Context) -> str:
        return await ctx.step.run("work", lambda: "done")

    return app


def _orphans(db: str, n: int, owner: str, ttl: float) -> list[str]:
    """``n`` runs leased by ``owner`` for ``ttl`` seconds from now: a worker that died
    mid-pass."""
    app = _app(db)
    try:
        ids = app.send([Event(name="noop/go") for _ in range(n)])
        engine = app.engine
        with engine.store.transaction() as tx:
            held = tx.lease_due(owner, engine.clock.now(), n, ttl, engine.served)
    finally:
        app.close()
    run_ids = [lease.run_id for lease in held]
    assert len(run_ids) == len(ids) == n
    return run_ids


async def _serve_until_done(db: str, worker_id: str, run_ids: list[str]) -> None:
    app = _app(db)
    try:
        async with app.worker(worker_id=worker_id, poll_interval=0.01):
            for run_id in run_ids:
                run = await app.wait_for_run(run_id, timeout=30)
                assert run.status == "COMPLETED"
    finally:
        app.close()


async def test_a_restarted_worker_announces_the_runs_it_reclaims(
    app_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 "Crash recovery is announced": a worker that reclaims its own leases logs it
    run_ids = _orphans(app_db, 3, "w1", 3600)
    with caplog.at_level(logging.INFO, logger="stepline.worker"):
        await _serve_until_done(app_db, "w1", run_ids)
    assert "resuming 3 runs of worker w1" in caplog.messages


async def test_a_worker_announces_the_expired_leases_it_takes_over(
    app_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 "Crash recovery is announced": a worker that takes over expired leases logs it
    run_ids = _orphans(app_db, 2, "w-dead", -1)
    with caplog.at_level(logging.INFO, logger="stepline.worker"):
        await _serve_until_done(app_db, "w2", run_ids)
    assert "resuming 2 runs of worker w-dead" in " | ".join(caplog.messages)
