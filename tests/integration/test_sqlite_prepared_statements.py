"""A worker on SQLite prepares each of its store's statements once per connection: no statement
re-prepares at every call. SQLite re-prepares a statement whenever a parameter is bound again if
the planner compared that parameter with a partial index's constant (``status = ?`` against
runs_start_deadline's ``status = 'QUEUED'``, ``app_id = ?`` against queue_unowned's
``app_id = ''``): that cost the lease query ten times its own run, a runs listing 40%. The
workload: steps, a sleep, waits (matched and timed out), events sent from a step, flow control
(concurrency keys, throttle, rate limit, priority, debounce, batches, a singleton, idempotency),
cancellation (``cancel_on``, by the API), a start timeout, and the runs listed by status."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlitetest
from stepline import (
    App,
    BatchEvents,
    CancelOn,
    Concurrency,
    Context,
    Debounce,
    Event,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerEvent,
)
from stepline.store.sqlite import SQLiteStore
from stepline.testing import MockClock, TestEngine


class _Watched(SQLiteStore):
    """A SQLite store that reads, as it closes, which statements its connections re-prepared
    (SQLite's ``sqlite_stmt`` table: the statements a connection holds prepared, 128 at most
    in Python's cache)."""

    reprepared: list[str] | None = None
    most_held = 0  # the most statements one connection held prepared

    def close(self) -> None:
        if self.reprepared is None:
            self.reprepared = []
            with self._all_lock:
                for conn in self._all:
                    self.reprepared += _prepared_again(conn)
                    held = conn.execute("SELECT count(*) FROM sqlite_stmt").fetchone()[0]
                    self.most_held = max(self.most_held, held)
        super().close()


def _prepared_again(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT reprep, run, sql FROM sqlite_stmt WHERE reprep > 0").fetchall()
    return [f"{reprep} of {run}: {' '.join(sql.split())[:100]}" for reprep, run, sql in rows]


def _workload(app: App) -> None:
    @app.function(
        id="steps",
        trigger=TriggerEvent("order/placed"),
        concurrency=[Concurrency(limit=5, key="event.data.shop")],
        priority=Priority(run="event.data.n"),
        cancel_on=CancelOn("order/cancelled", match="data.n"),
        timeouts=Timeouts(start="1h"),
    )
    async def steps(ctx: Context) -> Any:
        n = await ctx.step.run("load", lambda: ctx.event.data["n"])
        await ctx.step.sleep("pause", "10m")
        paid = await ctx.step.wait_for_event(
            "paid", event="order/paid", match="data.n", timeout="1h"
        )
        await ctx.step.send_event("announce", Event("order/done", {"n": n}))
        return {"n": n, "paid": paid is not None}

    @app.function(
        id="throttled",
        trigger=TriggerEvent("order/done"),
        throttle=Throttle(limit=10, period="1m"),
        rate_limit=RateLimit(100, "1h", key="event.data.n"),
        idempotency="event.data.n",
    )
    async def throttled(ctx: Context) -> Any:
        return await ctx.step.run("note", lambda: ctx.event.data["n"])

    @app.function(id="digest", trigger=TriggerEvent("order/placed"), debounce=Debounce(period="1m"))
    async def digest(ctx: Context) -> Any:
        return ctx.event.data["n"]

    @app.function(
        id="batched",
        trigger=TriggerEvent("order/placed"),
        batch_events=BatchEvents(max_size=3, timeout="1m"),
    )
    async def batched(ctx: Context) -> Any:
        return len(ctx.events)

    @app.function(
        id="single",
        trigger=TriggerEvent("order/placed"),
        singleton=Singleton(key="event.data.shop"),
    )
    async def single(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1m")


async def _listed(t: TestEngine) -> None:
    for status in ("QUEUED", "RUNNING", "SLEEPING", "WAITING", "COMPLETED", "CANCELLED"):
        await t.runs(status=status)
        await t.runs(function_id="steps", status=status)


async def test_a_worker_on_sqlite_re_prepares_no_statement(tmp_path: Path) -> None:
    app = App("prepared")
    _workload(app)
    store = _Watched(sqlitetest.fresh_database(tmp_path / "s.db"), synchronous="NORMAL")
    async with TestEngine(app, store=store, clock=MockClock(autojump=False)) as t:
        for round_ in range(2):
            ns = range(round_ * 4, round_ * 4 + 4)
            ids = await t.send([Event("order/placed", {"n": n, "shop": f"s{n % 2}"}) for n in ns])
            runs = [(await t.runs(event_id=i, function_id="steps"))[0].run_id for i in ids]
            for run_id in runs:
                await t.wait_for_status(run_id, "SLEEPING")
            await _listed(t)
            t.clock.advance(600)  # the sleeps end
            for run_id in runs:
                await t.wait_for_status(run_id, "WAITING")
            await _listed(t)
            await t.send(Event("order/paid", {"n": ns[0]}))
            await t.send(Event("order/cancelled", {"n": ns[1]}))
            assert await app.cancel_run(runs[2])
            t.clock.advance(3600)  # the last one's wait times out
            ended = [await t.wait_for_run(run_id) for run_id in runs]
            assert [r.status for r in ended] == ["COMPLETED", "CANCELLED", "CANCELLED", "COMPLETED"]
            t.clock.advance(60)  # the debounce, the batch and the singleton's nap end
            await t.tick()
            await _listed(t)
    assert store.reprepared == []
    # below the cache's 128: no statement was finalized (and its count lost) before the check
    assert store.most_held < 128
