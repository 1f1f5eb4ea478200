"""A run another process hands to a worker whose only free slot is its spare, for a function
that has a pass there (``_spare_slot``: the spare is only for a function with no pass here),
is given back at once — its lease expired, so another worker takes it — not left leased to the
worker until one of its passes ends or the lease expires (a whole TTL).

Before, ``give_back`` left the run to the worker's next lease attempt, which it makes at once
only when it has room: with only the spare free and every function it serves running here,
it made none (``_spare_slot.attempt`` is None), so the run waited.

Since the sender's ``HAND_OFF`` offers a worker's spare by the same rule, such a run is handed
to another worker with room at once (the first test; before, to the worker with only its
spare free, which gave it back); a worker the sender counts more slots for than it has (here
an offer overstating them: what the sender cannot see, an in-process send holding the spare,
a claim in flight) still gives it back, and another worker takes it (the second)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from _polling import until

from stepline import App, Context, Event, TriggerEvent


def _app(pg_url: str, held: dict[str, asyncio.Event], ran: list[str]) -> App:
    app = App("spare-given-back", db=pg_url)
    for name in ("a", "b"):

        def register(name: str) -> None:
            @app.function(id=name, trigger=TriggerEvent(name))
            async def fn(ctx: Context) -> Any:
                async def step() -> str:
                    ran.append(f"{name}:{ctx.event.data['n']}")
                    if ctx.event.data["n"] == 0:  # the first of each: held
                        await held[name].wait()
                    return name

                return await ctx.step.run("s", step)

        register(name)
    return app


async def _both_held_then_send(pg_url: str, overstated: bool) -> tuple[int, int]:
    """a-worker (concurrency 3) holding a pass of each of its two functions (its one free slot
    is the spare), b-worker idle, another process sends ``a``: how many runs each was handed
    meanwhile, once the run ran (``overstated``: a-worker's offer says 4 slots)."""
    held = {"a": asyncio.Event(), "b": asyncio.Event()}
    ran: list[str] = []
    first, second, sender = (_app(pg_url, held, ran) for _ in range(3))
    try:
        # "a-worker" sorts first: the hand-off chooses it among the offering workers with room
        async with first.worker(worker_id="a-worker", concurrency=3, lease_ttl=600) as busy:
            try:
                await asyncio.wait_for(busy.ready.wait(), 30)
                await first.send_async([Event("a", {"n": 0}), Event("b", {"n": 0})])
                await until("both held", lambda: {"a:0", "b:0"} <= set(ran))
                if overstated:
                    with psycopg.connect(pg_url, autocommit=True) as conn:
                        conn.execute("UPDATE handoffs SET slots = 4 WHERE worker_id = 'a-worker'")
                async with second.worker(worker_id="b-worker", concurrency=3) as other:
                    await asyncio.wait_for(other.ready.wait(), 30)
                    handed = busy.handed, other.handed
                    await asyncio.to_thread(sender.send, Event("a", {"n": 1}))
                    # given back: before R6, leased to a-worker for its TTL (600 s) with no pass
                    await until("the handed run to run", lambda: "a:1" in ran, timeout=30)
                    counts = busy.handed - handed[0], other.handed - handed[1]
            finally:
                for event in held.values():
                    event.set()
    finally:
        for app in (first, second, sender):
            app.close()
    return counts


async def test_a_run_of_a_function_running_in_a_worker_with_only_its_spare_free_goes_elsewhere(
    pg_url: str,
) -> None:
    assert await _both_held_then_send(pg_url, overstated=False) == (0, 1)


async def test_a_handed_run_that_does_not_fit_the_spare_is_taken_by_another_worker(
    pg_url: str,
) -> None:
    busy, _ = await _both_held_then_send(pg_url, overstated=True)
    assert busy == 1  # handed to a-worker, which gave it back
