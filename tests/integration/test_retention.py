"""App(retention=...): workers delete runs that ended longer ago than the retention."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine import _housekeeping
from stepline.store.records import Purged
from stepline.store.sqlite.control_verbs import SQLiteControlVerbs
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


async def test_workers_purge_in_small_batches_one_round_after_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_housekeeping, "PURGE_BATCH", 4)
    batches: list[int] = []
    purge_before = SQLiteControlVerbs.purge_before

    def counted(self: SQLiteControlVerbs, cutoff: float, limit: int) -> Purged:
        purged = purge_before(self, cutoff, limit)
        batches.append(purged.runs)
        return purged

    monkeypatch.setattr(SQLiteControlVerbs, "purge_before", counted)
    app = App("batches", retention="1d")

    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> Any:
        return 1

    clock = MockClock(autojump=False)
    async with TestEngine(app, path=tmp_path / "b.db", clock=clock) as t:
        for _ in range(10):
            await t.trigger(Event("go"))
        clock.advance(2 * 86400)

        async def none_left() -> bool:
            await t.tick()
            return not await t.runs(limit=100)

        await until("every old run purged, a batch per round", none_left)
    assert [n for n in batches if n] == [4, 4, 2]  # each in a transaction of its own
