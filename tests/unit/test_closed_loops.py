"""A closed event loop is collected: nothing of Stepline's that outlives it keeps it.

The engine's group-ingest batchers (``Engine._batchers``, one a loop that sent) kept a closed
loop, and its batcher, until another loop sent; the executing rounds of a loop
(``_executing._Rounds``) kept one closed in the middle of a round (its pass never ended, or
was cancelled after the close) for good."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stepline import App, Context, Event, TriggerEvent
from stepline.engine._executing import ExecutingSteps
from stepline.engine._ops import _Op
from stepline.store.records import Lease


def _collected(main: Callable[[], Coroutine[Any, Any, Any]]) -> bool:
    """Whether a loop that ran ``main()`` to its end and closed is collected."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    closed = weakref.ref(loop)
    del loop
    gc.collect()
    return closed() is None


def test_a_loop_that_sent_is_collected_once_closed(tmp_path: Path) -> None:
    app = App("loops", db=str(tmp_path / "loops.db"))

    @app.function(id="once", trigger=TriggerEvent("loops/go"))
    async def once(ctx: Context) -> str:
        return "ok"

    try:
        assert _collected(lambda: app.send_async(Event("loops/go")))
        # another loop sends as before (a batcher of its own)
        other = asyncio.new_event_loop()
        try:
            [event_id] = other.run_until_complete(app.send_async(Event("loops/go")))
            assert event_id
        finally:
            other.close()
    finally:
        app.close()


def test_a_loop_closed_in_the_middle_of_a_round_is_collected() -> None:
    """A pass's round begun (its steps executing: the loop's rounds hold it) and never ended:
    the loop closed with the pass's task pending."""
    jobs: list[Any] = []
    engine: Any = SimpleNamespace(writer=SimpleNamespace(submit=jobs.append))

    async def begin_a_round() -> None:
        loop = asyncio.get_running_loop()
        steps = ExecutingSteps(engine, Lease(run_id="r", token="t"), loop, {})
        op = _Op("run", "s", "s", "h-s", loop.create_future())
        steps.show_later((op,), 0, 0.0)  # and never done()

    assert _collected(begin_a_round)
    assert jobs == []  # (never shown: the loop's timer never ran)
