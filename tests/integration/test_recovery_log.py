"""Crash recovery is announced: a worker that reclaims its own leases (restarted with the same id)
or takes over another worker's expired leases says so in its log."""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

import stepline
from stepline import App, Context, Event


def _app(db: Path) -> App:
    app = App("recovery", db=f"sqlite:///{db}")

    @app.function(id="noop", trigger=stepline.TriggerEvent("noop/go"))
    async def noop(ctx: Context) -> str:
        return await ctx.step.run("work", lambda: "done")

    return app


def _orphans(db: Path, n: int, owner: str, expires_at: float) -> list[str]:
    """``n`` runs leased by ``owner`` until ``expires_at``: a worker that died mid-pass."""
    app = _app(db)
    try:
        ids = app.send([Event(name="noop/go") for _ in range(n)])
    finally:
        app.close()
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE queue SET lease_owner = ?, lease_token = 'dead', lease_expires_at = ?",
            (owner, expires_at),
        )
        run_ids = [r[0] for r in conn.execute("SELECT run_id FROM queue")]
    conn.close()
    assert len(run_ids) == len(ids) == n
    return run_ids


async def _serve_until_done(db: Path, worker_id: str, run_ids: list[str]) -> None:
    app = _app(db)
    try:
        async with app.worker(worker_id=worker_id, poll_interval=0.01):
            for run_id in run_ids:
                run = await app.wait_for_run(run_id, timeout=30)
                assert run.status == "COMPLETED"
    finally:
        app.close()


async def test_a_restarted_worker_announces_the_runs_it_reclaims(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 "Crash recovery is announced": a worker that reclaims its own leases logs it
    db = tmp_path / "r.db"
    run_ids = _orphans(db, 3, "w1", time.time() + 3600)
    with caplog.at_level(logging.INFO, logger="stepline.worker"):
        await _serve_until_done(db, "w1", run_ids)
    assert "resuming 3 runs of worker w1" in caplog.messages


async def test_a_worker_announces_the_expired_leases_it_takes_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 6 "Crash recovery is announced": a worker that takes over expired leases logs it
    db = tmp_path / "r.db"
    run_ids = _orphans(db, 2, "w-dead", time.time() - 1)
    with caplog.at_level(logging.INFO, logger="stepline.worker"):
        await _serve_until_done(db, "w2", run_ids)
    assert "resuming 2 runs of worker w-dead" in " | ".join(caplog.messages)
