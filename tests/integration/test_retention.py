"""App(retention=...): workers delete runs that ended longer ago than the retention."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine


async def test_workers_purge_runs_older_than_the_retention(tmp_path: Path) -> None:
    app = App("kept-a-day", retention="1d")

    @app.function(id="short-lived", trigger=TriggerEvent("go"))
    async def short_lived(ctx: Context) -> Any:
        return await ctx.step.run("work", lambda: "done")

    clock = MockClock(autojump=False)
    async with TestEngine(app, path=tmp_path / "r.db", clock=clock) as t:
        old = await t.trigger(Event("go"))
        clock.advance(2 * 86400)
        recent = await t.trigger(Event("go"))
        clock.advance(3601)  # the next purge is due
        await t.tick()
        assert await t.app.get_run(old.run_id) is None
        kept = await t.app.get_run(recent.run_id)
        assert kept is not None
        assert kept.output == "done"


async def test_purge_runs_by_api(tmp_path: Path) -> None:
    app = App("manual")

    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> Any:
        return 1

    clock = MockClock(autojump=False)
    async with TestEngine(app, path=tmp_path / "m.db", clock=clock) as t:
        first = await t.trigger(Event("go"))
        clock.advance(10)
        second = await t.trigger(Event("go"))
        cutoff = datetime.fromtimestamp(clock.now() - 5, UTC)
        assert await t.app.purge_runs(before=cutoff) == 1
        assert await t.app.get_run(first.run_id) is None
        assert await t.app.get_run(second.run_id) is not None
