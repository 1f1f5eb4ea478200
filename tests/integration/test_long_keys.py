"""Values drawn from events that a store keeps in index entries — flow-control keys, a sender's
event id, a wait's or a ``cancel_on``'s indexed value — may be of any length, on every store
(``store/keys.py``). On PostgreSQL a B-tree entry over ~2.7 kB is refused (SQLSTATE 54000):
a long idempotency key, concurrency key or event id made the send fail there with "the store
is unavailable; retry later" (for good: retried forever), and a long wait literal or an event
sent with a long idempotency key made the run's pass commit fail each time until "re-entered
50 times without progress", while SQLite kept them (lead, eighteenth stop). Two long values
that share their first characters stay distinct."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from _polling import until

from stepline import App, CancelOn, Concurrency, Context, Event, Singleton, TriggerEvent
from stepline.store.keys import KEY_CHARS
from stepline.testing import MockClock, TestEngine

# random (so incompressible: PostgreSQL compresses an entry before refusing it), 12,000
# characters; TWIN shares all but its last character
LONG = secrets.token_hex(6000)
TWIN = LONG[:-1] + ("0" if LONG[-1] != "0" else "1")
assert len(LONG) > KEY_CHARS


async def test_long_idempotency_concurrency_and_singleton_keys_work_and_stay_distinct(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="keyed",
        trigger=TriggerEvent("go"),
        idempotency="event.data.k",
        concurrency=[Concurrency(limit=1, key="event.data.k")],
        singleton=Singleton(key="event.data.k", mode="skip"),
    )
    async def keyed(ctx: Context) -> Any:
        return await ctx.step.run("k", lambda: len(ctx.event.data["k"]))

    async with make_engine() as t:
        first = await t.trigger(Event("go", {"k": LONG}))
        assert first.status == "COMPLETED" and first.output == len(LONG)
        [again] = await t.send(Event("go", {"k": LONG}))  # the same key: skipped
        assert await t.runs(event_id=again) == []
        twin = await t.trigger(Event("go", {"k": TWIN}))  # another key: runs
        assert twin.status == "COMPLETED"


async def test_a_long_event_id_deduplicates_and_a_twin_does_not(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="on-go", trigger=TriggerEvent("go"))
    async def on_go(ctx: Context) -> Any:
        return ctx.event.id

    async with make_engine() as t:
        run = await t.trigger(Event("go", id=LONG))
        assert run.output == LONG  # the id as sent, not its digest
        [duplicate] = await t.send(Event("go", id=LONG))
        assert await t.runs(event_id=duplicate) == []
        twin = await t.trigger(Event("go", id=TWIN))
        assert twin.output == TWIN


async def _waiting_on(t: TestEngine, run_id: str, step_id: str) -> bool:
    run = await t.app.get_run(run_id)
    return run is not None and run.status == "WAITING" and run.steps[-1].id == step_id


async def test_a_wait_on_a_long_value_resumes_on_it_alone(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="waiter", trigger=TriggerEvent("go"))
    async def waiter(ctx: Context) -> Any:
        literal = await ctx.step.wait_for_event(
            "literal", event="paid", if_=f'async.data.k == "{LONG}"', timeout="1d"
        )
        own = await ctx.step.wait_for_event(
            "own", event="paid", if_="async.data.k == event.data.k", timeout="1d"
        )
        return [e.data["n"] if e else None for e in (literal, own)]

    async with make_engine(clock=MockClock(autojump=False)) as t:
        [event_id] = await t.send(Event("go", {"k": TWIN}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "WAITING")
        await t.send(Event("paid", {"k": TWIN, "n": 1}))  # not the literal's value
        await t.send(Event("paid", {"k": LONG, "n": 2}))  # the literal's: resumes the first
        await until("the second wait", lambda: _waiting_on(t, run.run_id, "own"))
        await t.send(Event("paid", {"k": LONG, "n": 3}))  # not the run's own value
        await t.send(Event("paid", {"k": TWIN, "n": 4}))  # the run's own: resumes the second
        done = await t.wait_for_run(run.run_id)
    assert done.output == [2, 4]


async def test_cancel_on_a_long_value_cancels_on_it_alone(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(
        id="cancellable",
        trigger=TriggerEvent("go"),
        cancel_on=[CancelOn(event="stop", if_="async.data.k == event.data.k")],
    )
    async def cancellable(ctx: Context) -> Any:
        await ctx.step.sleep("nap", "1d")
        return "slept"

    async with make_engine(clock=MockClock(autojump=False)) as t:
        [event_id] = await t.send(Event("go", {"k": LONG}))
        [run] = await t.runs(event_id=event_id)
        await t.wait_for_status(run.run_id, "SLEEPING")
        await t.send(Event("stop", {"k": TWIN}))
        assert (await t.app.get_run(run.run_id)).status == "SLEEPING"  # type: ignore[union-attr]
        await t.send(Event("stop", {"k": LONG}))
        done = await t.wait_for_run(run.run_id)
    assert done.status == "CANCELLED"


async def test_an_event_sent_from_a_step_with_a_long_key_starts_its_run(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    @app.function(id="sender", trigger=TriggerEvent("go"))
    async def sender(ctx: Context) -> Any:
        await ctx.step.send_event("send", Event("child", {"k": LONG}, id=LONG))
        return "sent"

    @app.function(id="child", trigger=TriggerEvent("child"), idempotency="event.data.k")
    async def child(ctx: Context) -> Any:
        return len(ctx.event.data["k"])

    async with make_engine() as t:
        run = await t.trigger(Event("go"))
        assert run.status == "COMPLETED", run.error
        [child_run] = await t.runs(function_id="child")
        assert (await t.wait_for_run(child_run.run_id)).output == len(LONG)
