"""``StepGate`` (engine/_ops.py): the futures of a pass's step calls; ``holds`` tells a pending
one, ``close`` ends those still pending. Resolved futures are dropped now and then, not each by
a done callback (a loop callback for every step)."""

from __future__ import annotations

import asyncio

from stepline.engine._ops import StepGate, Suspended


async def test_a_resolved_future_is_not_held_and_close_ends_the_pending_ones() -> None:
    gate = StepGate(asyncio.get_running_loop())
    done, pending = gate.future(), gate.future()
    done.set_result(1)
    assert not gate.holds(done) and gate.holds(pending)
    gate.close()
    assert isinstance(pending.exception(), Suspended)
    assert done.result() == 1


async def test_resolved_futures_are_dropped_as_step_calls_go_on() -> None:
    gate = StepGate(asyncio.get_running_loop())
    first = gate.future()  # pending throughout (a step call still waiting)
    for _ in range(1000):  # each resolved at once, no loop turn between
        gate.future().set_result(None)
    assert len(gate._pending) <= 64  # not 1,001 waiting for their done callbacks
    assert gate.holds(first)
    gate.close()
    assert isinstance(first.exception(), Suspended)


async def test_many_pending_futures_are_all_kept() -> None:
    gate = StepGate(asyncio.get_running_loop())
    pending = [gate.future() for _ in range(500)]  # a gather of 500 steps
    assert all(gate.holds(future) for future in pending)
    gate.close()
    assert all(isinstance(future.exception(), Suspended) for future in pending)
