"""``bench/per_step.py``'s breakdown wraps the writer's ``submit``: the wrapper passes every
argument through (a pass's commit is submitted ``alone=True``; before, the wrapper took only
positional ones, the pass failed with a TypeError, and the row's run never ended)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.per_step import _breakdown

from stepline import App, TriggerEvent

STEPS = 3


async def test_the_breakdown_run_ends_with_its_pass_commits_timed(tmp_path: Path) -> None:
    # a database of its own (the default, .stepline/stepline.db in the current folder, was left
    # behind in the checkout and reused: a worktree that once ran a newer schema failed here)
    app = App("bench-breakdown", db=f"sqlite:///{tmp_path / 'breakdown.db'}")
    finished: list[asyncio.Future[None]] = []

    async def noop(i: int) -> int:
        return i

    @app.function(id="per-step", trigger=TriggerEvent("bench/per-step"))
    async def many_steps(ctx: Any) -> int:
        for i in range(ctx.event.data["n"]):
            await ctx.step.run(f"s{i}", noop, i)
        finished[-1].set_result(None)
        return STEPS

    worker = app.make_worker(concurrency=10)
    task = asyncio.create_task(worker.run())
    try:
        found = await asyncio.wait_for(_breakdown(app, STEPS, finished), 60)  # a hang guard
    finally:
        worker.stop()
        await task
        app.close()
    assert found["transactions"] > 0 and found["wall_ms"] > 0  # timed through the wrappers
