"""``bench/per_step.py``'s breakdown wraps the writer's ``submit``: the wrapper passes every
argument through (a pass's commit is submitted ``alone=True``; before, the wrapper took only
positional ones, the pass failed with a TypeError, and the row's run never ended). On
PostgreSQL it times a lone step's commit on the loop (``commit_steps_on_loop``) as a
transaction too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from bench.per_step import _breakdown

from stepline import App, TriggerEvent
from stepline.store.postgres import PostgresStore
from stepline.store.records import PassCommit

STEPS = 3


def _per_step_app(db: str) -> tuple[App, list[asyncio.Future[None]]]:
    """The bench's per-step app on ``db``: its function runs ``n`` steps, then sets the last
    future of the list it returns (``_breakdown`` appends one a run)."""
    app = App("bench-breakdown", db=db)
    finished: list[asyncio.Future[None]] = []

    async def noop(i: int) -> int:
        return i

    @app.function(id="per-step", trigger=TriggerEvent("bench/per-step"))
    async def many_steps(ctx: Any) -> int:
        for i in range(ctx.event.data["n"]):
            await ctx.step.run(f"s{i}", noop, i)
        finished[-1].set_result(None)
        return int(ctx.event.data["n"])

    return app, finished


async def test_the_breakdown_run_ends_with_its_pass_commits_timed(tmp_path: Path) -> None:
    # a database of its own (the default, .stepline/stepline.db in the current folder, was left
    # behind in the checkout and reused: a worktree that once ran a newer schema failed here)
    app, finished = _per_step_app(f"sqlite:///{tmp_path / 'breakdown.db'}")

    worker = app.make_worker(concurrency=10)
    task = asyncio.create_task(worker.run())
    try:
        found = await asyncio.wait_for(_breakdown(app, STEPS, finished), 60)  # a hang guard
    finally:
        worker.stop()
        await task
        app.close()
    assert found["transactions"] > 0 and found["wall_ms"] > 0  # timed through the wrappers


async def test_the_breakdown_times_postgresqls_lone_step_commits(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on PostgreSQL a step's commit is a lone step's (``commit_steps_on_loop``, on the loop):
    # before, the breakdown did not wrap it, so its round trip (and fsync) was counted as the
    # writer's hand-off, and only the run's other commits as transactions
    app, finished = _per_step_app(pg_url)
    steps = 6

    worker = app.make_worker(concurrency=10)
    task = asyncio.create_task(worker.run())
    lone = PostgresStore.commit_steps_on_loop
    calls: list[int] = []

    async def counted(store: PostgresStore, commit: PassCommit, *now: float | None) -> bool:
        calls.append(1)
        result: bool = await lone(store, commit, *now)
        return result

    try:
        await asyncio.wait_for(worker.ready.wait(), 60)
        assert isinstance(app.engine.store, PostgresStore)
        monkeypatch.setattr(PostgresStore, "commit_steps_on_loop", counted)
        found = await asyncio.wait_for(_breakdown(app, steps, finished), 60)  # a hang guard
    finally:
        monkeypatch.undo()
        worker.stop()
        await task
        app.close()
    # most steps after the first go the lone way (a step whose loop connection was busy, with
    # the worker's poll say, goes through the writer: how many varies, 4 to 6 of 6 here)
    assert calls, "no step's commit went the lone way"
    # each lone commit timed as a transaction (before: only the run's other commits, 2-4 of
    # them, were counted; the run's end may go the lone way too, so all of them may be lone)
    assert found["transactions"] >= len(calls)
