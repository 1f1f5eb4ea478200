"""A run whose commit meets a failing connection, driven by a worker until it completes: the
tests of a connection reset under a commit (``test_connection_reset.py``) and of a server that
stops answering (``test_pg_reconnect.py``).

Its function runs ``steps`` steps; the first run of step ``held``'s body calls ``hold()`` (a
proxy holds what the worker sends next, the server's processes are stopped), so that step's
commit is the one that meets it; with ``large``, that step's output is a string of that many
bytes (a commit larger than the sockets' buffers). ``ran`` counts each step body's runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from stepline import App, Context, Event, TriggerEvent


class HeldStep:
    """The function (``add_to``) and what its step bodies did (``ran``)."""

    def __init__(self, steps: int, held: int, hold: Callable[[], None], large: int = 0) -> None:
        self.steps = steps
        self.held = held
        self._hold = hold
        self._large = large
        self.ran: dict[str, int] = {}

    def add_to(self, app: App) -> None:
        """The function ``steps`` on ``app``, triggered by ``go``."""

        @app.function(id="steps", trigger=TriggerEvent("go"))
        async def steps(ctx: Context) -> int:
            total = 0
            for i in range(self.steps):
                value = await ctx.step.run(f"s{i}", self._body, i)
                total += value if isinstance(value, int) else i
            return total

    def _body(self, i: int) -> int | str:
        name = f"s{i}"
        self.ran[name] = self.ran.get(name, 0) + 1
        if i != self.held:
            return i
        if self.ran[name] == 1:
            self._hold()
        return "x" * self._large if self._large else i

    def check_ran(self, output: Any) -> None:
        """The run's output is right, and the steps committed before the held one ran once, the
        held one at most twice (its commit landed, or not), the rest once: no committed step
        ran again."""
        assert output == sum(range(self.steps))
        held = f"s{self.held}"
        assert {name: n for name, n in self.ran.items() if name != held} == {
            f"s{i}": 1 for i in range(self.steps) if i != self.held
        }
        assert self.ran[held] in (1, 2)


async def run_through(
    app: App,
    interrupt: Callable[[], Awaitable[None]],
    bound: float,
    **worker_options: Any,
) -> Any:
    """Start a worker of ``app``, send ``go``, await ``interrupt()`` (what happens to the held
    commit), then the run's end (within ``bound`` real seconds: a worker waiting forever fails
    here); the worker stopped and ``app`` closed after. The ended run."""
    worker = app.make_worker(worker_id="w", poll_interval=0.05, **worker_options)
    task = asyncio.create_task(worker.run())
    try:
        [event_id] = await app.send_async(Event("go"))
        await interrupt()
        async with asyncio.timeout(bound):
            runs = []
            while not runs:
                runs = await app.runs(event_id=event_id)
                await asyncio.sleep(0.05)  # real time: a poll, under the bound
            return await app.wait_for_run(runs[0].run_id, timeout=bound)
    finally:
        worker.stop()
        try:  # (not wait_for: it would wait on for a worker that never ends)
            await asyncio.wait({task}, timeout=10)
        finally:
            app.close()
