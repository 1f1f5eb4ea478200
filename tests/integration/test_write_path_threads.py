"""The write path across event loops and threads: senders in several loops and threads at once,
while a worker runs in another loop, each get their own committed result (issue 6 item 3), on
SQLite and PostgreSQL (whose passes commit on their loop: tests/unit/test_writer_loop.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, Context, Event, TriggerEvent
from stepline.testing import TestEngine

LOOP_THREADS = 4
SYNC_THREADS = 2
PER_SENDER = 20


@pytest.mark.timeout(90)
@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
async def test_senders_in_several_loops_and_threads_while_a_worker_runs(
    app: App, make_engine: Callable[..., TestEngine]
) -> None:
    # issue 6 item 3: a job sent from one loop while the writer drained on another hung (its
    # future was resolved from the wrong thread) or was dropped between the slice and the delete
    asyncio.get_running_loop().set_debug(True)  # the worker's loop refuses wrong-thread calls too

    @app.function(id="echo", trigger=TriggerEvent("go"))
    async def echo(ctx: Context) -> Any:
        return await ctx.step.run("echo", lambda: ctx.event.data["n"])

    async with make_engine() as t:
        sent: list[list[str]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def record(ids: list[str]) -> None:
            with lock:
                sent.append(ids)

        async def send_from_own_loop(base: int) -> None:
            for i in range(PER_SENDER):
                # bounded: on the old writer a send from another loop could hang forever
                ids = await asyncio.wait_for(app.send_async(Event("go", {"n": base + i})), 30)
                record(ids)

        def loop_thread(base: int) -> None:
            try:  # debug=True: asyncio refuses a callback scheduled from the wrong thread
                asyncio.run(send_from_own_loop(base), debug=True)
            except BaseException as exc:
                errors.append(exc)

        def sync_thread(base: int) -> None:
            try:
                for i in range(PER_SENDER):
                    record(app.send(Event("go", {"n": base + i})))
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=loop_thread, args=(1000 * k,)) for k in range(LOOP_THREADS)
        ] + [
            threading.Thread(target=sync_thread, args=(100_000 + 1000 * k,))
            for k in range(SYNC_THREADS)
        ]
        for thread in threads:
            thread.start()
        await send_from_own_loop(1_000_000)  # and the worker's own loop sends meanwhile
        for thread in threads:
            await _join(thread)
        assert errors == []

        event_ids = [i for ids in sent for i in ids]
        expected = (LOOP_THREADS + SYNC_THREADS + 1) * PER_SENDER
        assert len(event_ids) == len(set(event_ids)) == expected
        outputs = []
        for event_id in event_ids:
            [run] = await t.runs(event_id=event_id)  # every acknowledged event is stored
            outputs.append((await t.wait_for_run(run.run_id)).output)
        assert len(set(outputs)) == expected


async def _join(thread: threading.Thread, timeout: float = 60.0) -> None:
    """Wait for a thread without blocking this loop (the worker runs in it)."""
    await asyncio.wait_for(asyncio.to_thread(thread.join), timeout)
    assert not thread.is_alive()
