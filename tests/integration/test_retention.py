"""App(retention=...): workers delete runs that ended longer ago than the retention, in small
batches, one round after another, on every store (``store_kind``: SQLite, memory, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from _polling import until

import pgtest
import sqlitetest
from stepline import App, Context, Event, TriggerEvent
from stepline.engine import _housekeeping
from stepline.engine.engine import Engine as Engine_
from stepline.store.interface import StoreTx
from stepline.store.records import Purged
from stepline.testing import MockClock, TestEngine

Engine = Callable[[App, MockClock], TestEngine]


@pytest.fixture
def engine(store_kind: str, tmp_path: Path) -> Engine:
    """``async with engine(app, clock) as t:`` runs ``app`` with a worker on ``store_kind``."""

    def make(app: App, clock: MockClock) -> TestEngine:
        path = tmp_path / "stepline.db"
        if store_kind == "sqlite":
            sqlitetest.fresh_database(path)
        return TestEngine(app, store=pgtest.engine_store(store_kind), path=path, clock=clock)

    return make


async def test_workers_purge_runs_older_than_the_retention(engine: Engine) -> None:
    app = App("kept-a-day", retention="1d")

    @app.function(id="short-lived", trigger=TriggerEvent("go"))
    async def short_lived(ctx: Context) -> Any:
        return await ctx.step.run("work", lambda: "done")

    clock = MockClock(autojump=False)
    async with engine(app, clock) as t:
        old = await t.trigger(Event("go"))
        clock.advance(2 * 86400)
        recent = await t.trigger(Event("go"))
        clock.advance(3601)  # the next purge is due
        await t.tick()
        assert await t.app.get_run(old.run_id) is None
        kept = await t.app.get_run(recent.run_id)
        assert kept is not None
        assert kept.output == "done"


async def test_purge_runs_by_api(engine: Engine) -> None:
    app = App("manual")

    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> Any:
        return 1

    clock = MockClock(autojump=False)
    async with engine(app, clock) as t:
        first = await t.trigger(Event("go"))
        clock.advance(10)
        second = await t.trigger(Event("go"))
        cutoff = datetime.fromtimestamp(clock.now() - 5, UTC)
        assert await t.app.purge_runs(before=cutoff) == 1
        assert await t.app.get_run(first.run_id) is None
        assert await t.app.get_run(second.run_id) is not None


class _Counted:
    """A transaction whose ``purge_before`` results are recorded (``runs`` of each batch)."""

    def __init__(self, tx: StoreTx, batches: list[int]) -> None:
        self._tx, self._batches = tx, batches

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def purge_before(self, cutoff: float, limit: int) -> Purged:
        purged = self._tx.purge_before(cutoff, limit)
        self._batches.append(purged.runs)
        return purged


async def test_workers_purge_in_small_batches_one_round_after_another(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_housekeeping, "PURGE_BATCH", 4)
    batches: list[int] = []
    housekeeping = Engine_.housekeeping

    def counted(self: Engine_, tx: StoreTx, now: float) -> Any:
        return housekeeping(self, cast(StoreTx, _Counted(tx, batches)), now)

    monkeypatch.setattr(Engine_, "housekeeping", counted)
    app = App("batches", retention="1d")

    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> Any:
        return 1

    clock = MockClock(autojump=False)
    async with engine(app, clock) as t:
        for _ in range(10):
            await t.trigger(Event("go"))
        clock.advance(2 * 86400)

        async def none_left() -> bool:
            await t.tick()
            return not await t.runs(limit=100)

        await until("every old run purged, a batch per round", none_left)
    # 4 at most a batch, each in a transaction of its own: 10 runs in 3 batches or more (a
    # PostgreSQL transaction made again carefully after an optimistic try decides again)
    done = [n for n in batches if n]
    assert max(done) == 4 and len(done) >= 3 and done[-1] == 2, batches
