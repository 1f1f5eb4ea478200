"""``BatchWriter.submit(job, alone=True)``: a caller that submits nothing more before awaiting
(a pass's commit) has its job's loop commit begun in the submitting callback when the loop has
no other callback ready (none could queue a job to join it before the kick), one loop turn
sooner; otherwise the kick waits for the loop's next turn, as for any job."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from tests.unit.test_writer_loop import WAIT, LoopStore, idle, left_to_the_thread, reads

from stepline.engine.writer import BatchWriter
from stepline.store.interface import StoreTx
from stepline.store.memory import MemoryStore

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def test_a_lone_job_on_an_idle_loop_begins_its_commit_at_once() -> None:
    store = LoopStore()
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)  # whatever the test's start scheduled has run
        VAR.set("the caller's")
        seen: list[str] = []

        def job(tx: StoreTx) -> int:
            seen.append(VAR.get())
            return 1

        written = writer.submit(job, alone=True)
        assert store.batches == [1]  # begun in this callback: its jobs ran already
        assert seen == ["unset"]  # in an empty context, as the kick's (never the caller's)
        assert await written == 1
        assert writer.loop_commits == 1
    finally:
        writer.close()


async def test_a_lone_job_waits_for_the_kick_when_the_loop_has_callbacks_ready() -> None:
    store = LoopStore()
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)
        others: list[asyncio.Future[int]] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: others.append(writer.submit(lambda tx: 2)))  # ready: it runs first
        written = writer.submit(lambda tx: 1, alone=True)
        assert store.batches == []  # the kick is the loop's next turn's
        assert await written == 1
        assert await others[0] == 2
        assert store.batches == [2]  # the job queued by the ready callback joined it
    finally:
        writer.close()


async def test_a_job_not_alone_waits_for_the_kick() -> None:
    store = LoopStore()
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)
        first = writer.submit(lambda tx: 1)
        second = writer.submit(lambda tx: 2, alone=True)  # queued in the same callback
        assert store.batches == []
        assert (await first, await second) == (1, 2)
        assert store.batches == [2]  # one transaction
    finally:
        writer.close()


async def test_a_lone_job_of_a_kind_left_to_the_thread_counts_one_of_its_batches() -> None:
    """A lone job (``alone=True``) of a kind left to the thread goes to the thread and counts
    one of its 16 batches, as any batch (it counted two before: eight lone jobs, not 16)."""
    store = LoopStore()
    writer = BatchWriter(store)
    try:
        await left_to_the_thread(store, writer)
        for _ in range(16):  # its batches left to the thread
            await idle(writer)
            await asyncio.sleep(0)  # nothing else ready: a lone job's own batch
            assert await writer.submit(reads, alone=True) == "read"
        assert store.batches == [2, 2]  # none tried on the loop
        await idle(writer)
        await asyncio.sleep(0)
        assert await writer.submit(reads, alone=True) == "read"  # then on the loop again
        assert store.batches == [2, 2, 1]
    finally:
        writer.close()


class _BatchesStore(MemoryStore):
    """A memory store (its jobs the writer thread's) that records the size of each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def transaction(self) -> Any:
        self.batches.append(0)
        return super().transaction()


def _counted(store: _BatchesStore, value: int, taken: threading.Event | None = None) -> Any:
    def job(tx: StoreTx) -> int:
        store.batches[-1] += 1
        if taken is not None:
            taken.set()
        return value

    return job


async def test_a_lone_job_on_an_idle_loop_is_the_thread_s_at_once_without_a_kick() -> None:
    """A store whose jobs the thread makes: the thread takes a lone job when it is submitted,
    not at a kick a loop turn later. The loop is held in the submitting callback until the job
    ran (without the change, the job waits for a kick that cannot run: the wait times out)."""
    store = _BatchesStore()
    writer = BatchWriter(store)
    try:
        await writer.write(lambda tx: 0)  # the thread is started
        await idle(writer)
        await asyncio.sleep(0)  # whatever the test's start scheduled has run
        taken = threading.Event()
        written = writer.submit(_counted(store, 1, taken), alone=True)
        assert taken.wait(WAIT)  # made while this callback still runs
        assert await written == 1
        assert store.batches[-1] == 1
    finally:
        writer.close()


async def test_a_lone_job_for_the_thread_waits_for_the_kick_when_the_loop_has_callbacks_ready() -> (
    None
):
    store = _BatchesStore()
    writer = BatchWriter(store)
    try:
        await writer.write(lambda tx: 0)
        await idle(writer)
        await asyncio.sleep(0)
        others: list[asyncio.Future[int]] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: others.append(writer.submit(_counted(store, 2))))  # runs first
        written = writer.submit(_counted(store, 1), alone=True)
        assert await written == 1
        assert await others[0] == 2
        assert store.batches[1:] == [2]  # the job queued by the ready callback joined it
    finally:
        writer.close()
