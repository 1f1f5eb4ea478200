"""A NUL character inside event data is data: it is kept exactly by every store (in data, user
data, step outputs and results), while CEL's binding sees a string cut at its first NUL
(``expressions._env.NUL_TRUNCATES``; docs/expressions.md). A wait whose condition compares with
a literal holding a NUL (``"a\\u0000b"``) matches nothing on any store (no event's value, as CEL
sees it, holds one). Before (lead, nineteenth stop): PostgreSQL refused that wait's index entry
(its text cannot hold a NUL), so the run's pass commit failed at every attempt and the run FAILED
with ``StoreRefusedValue``; SQLite and the memory store kept the wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine

NUL = "a\x00b"


async def test_a_nul_in_data_is_kept_exactly(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> Any:
        return await ctx.step.run("a", lambda: {"s": ctx.event.data["s"], NUL: ctx.event.user})

    async with make_engine() as t:
        run = await t.trigger(Event("go", {"s": NUL, NUL: NUL}, user={"u": NUL}))
        assert run.status == "COMPLETED", run.error
        assert run.output == {"s": NUL, NUL: {"u": NUL}}
        assert run.steps[0].output == run.output


async def _waiting(t: TestEngine, run_id: str) -> bool:
    run = await t.app.get_run(run_id)
    return run is not None and run.status == "WAITING"


async def test_a_wait_on_a_literal_with_a_nul_matches_nothing_and_fails_nothing(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="waiter", trigger=TriggerEvent("go"))
    async def waiter(ctx: Context) -> Any:
        paid = await ctx.step.wait_for_event(
            "w", event="paid", if_='async.data.k == "a\\u0000b"', timeout="1h"
        )
        return paid is None

    clock = MockClock(autojump=False)  # the wait's hour passes when the test says so
    async with make_engine(clock=clock) as t:
        [event_id] = await t.send(Event("go", {}))
        [run] = await t.runs(event_id=event_id)
        await until("the wait", lambda: _waiting(t, run.run_id))
        await t.send(Event("paid", {"k": "a"}))
        await t.send(Event("paid", {"k": NUL}))
        await t.tick()
        assert await _waiting(t, run.run_id)  # neither event resolved it
        clock.advance(3601)
        await t.tick()
        ended = await t.app.wait_for_run(run.run_id, timeout=30)
        assert ended.status == "COMPLETED", ended.error
        assert ended.output is True  # timed out: nothing matched
