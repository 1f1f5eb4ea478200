"""A task released by ``Branches.stop`` at the end of its pass (review F5) lets the pass go
(review 2, R2)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from stepline.engine._branches import Branches


class Pass:
    """Stands for a PassExecutor (its memo, events, state): what a function's ``ctx`` reaches."""


async def test_a_released_task_does_not_keep_its_pass_alive() -> None:
    """A function starts a long-lived task (a library's keep-alive: F5) and its pass ends by
    a signal raised into it (a suspension: ``gate.close(Suspended)``). The released task's
    ``_Traced.parent`` is the function's task, which keeps its exception, whose traceback
    keeps the function's frame, whose ``ctx`` keeps the pass: alive as long as the task."""
    loop = asyncio.get_running_loop()
    the_pass = Pass()
    gone = weakref.ref(the_pass)
    branches = Branches(loop, lambda future: False, lambda: None, sync=False)
    forever = asyncio.Event()
    background: list[asyncio.Task[None]] = []

    async def function(ctx: Pass) -> None:
        background.append(asyncio.create_task(forever.wait()))  # e.g. a client's keep-alive
        await asyncio.sleep(0)
        raise RuntimeError("suspended")  # the signal a suspension raises in the function

    task = loop.create_task(function(the_pass), context=branches.context())
    while not task.done():  # as the pass waits for it (asyncio.wait in _stop_function)
        await asyncio.sleep(0)
    assert isinstance(task.exception(), RuntimeError)  # retrieved, as the pass does
    branches.stop()
    del task, the_pass
    for _ in range(3):  # the loop lets go of the handles that ran
        await asyncio.sleep(0)
    gc.collect()
    try:
        assert gone() is None, "the released task keeps its pass alive"
    finally:
        forever.set()
        await background[0]
