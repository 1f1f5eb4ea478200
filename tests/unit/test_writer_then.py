"""``BatchWriter.submit(job, then)``: ``then`` runs in the caller's loop as the job's result is
set (what it wakes runs at the next loop turn together with the caller), never after an error
or once the caller stopped waiting, and a failing ``then`` costs no other caller its result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from stepline.engine.writer import BatchWriter
from stepline.store.interface import StoreTx
from stepline.store.memory import MemoryStore


@pytest.fixture
async def writer() -> AsyncIterator[BatchWriter]:
    w = BatchWriter(MemoryStore())
    yield w
    w.close()


@contextlib.asynccontextmanager
async def holding(writer: BatchWriter) -> AsyncIterator[None]:
    """The jobs submitted in the block share one transaction: a job of its own holds the
    writer thread until the block ends."""
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first(tx: StoreTx) -> int:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(30)
        return 0

    held = writer.submit(first)
    await asyncio.sleep(0)  # the writer thread takes the first job alone
    yield
    release.set()
    assert await held == 0


async def test_then_runs_as_the_result_is_set(writer: BatchWriter) -> None:
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    seen: list[object] = []

    def then(result: int) -> None:
        seen.append(result)
        woken.set_result(None)  # as a step's future set by a pass

    future = writer.submit(lambda tx: 41, then)
    assert await future == 41
    # then ran at the delivery, before the caller resumed: what it woke is ready to run
    # in the same loop turn as the caller, not a turn later
    assert woken.done()
    assert seen == [41]


async def test_then_is_not_called_after_an_error(writer: BatchWriter) -> None:
    called: list[object] = []

    def job(tx: StoreTx) -> None:
        raise ValueError("the job's own error")

    with pytest.raises(ValueError, match="own error"):
        await writer.submit(job, called.append)
    assert called == []


async def test_then_is_not_called_once_the_caller_stopped_waiting(writer: BatchWriter) -> None:
    called: list[object] = []
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(tx: StoreTx) -> int:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(30)
        return 1

    future = writer.submit(slow, called.append)
    future.cancel()
    release.set()
    assert await writer.write(lambda tx: 2) == 2  # the slow job's transaction is over
    assert called == []


async def test_a_failing_then_costs_no_other_caller_its_result(
    writer: BatchWriter, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(result: int) -> None:
        raise RuntimeError("a continuation's bug")

    async with holding(writer):
        a = writer.submit(lambda tx: 1, broken)
        b = writer.submit(lambda tx: 2)
    assert await a == 1
    assert await b == 2
    assert "a write's continuation failed" in caplog.text


async def test_a_job_raising_stop_iteration_costs_no_caller_its_answer(
    writer: BatchWriter,
) -> None:
    # an asyncio future refuses StopIteration (``next()`` on an empty iterator in a store
    # verb): the caller gets it wrapped in a RuntimeError, as asyncio does for a coroutine, and
    # the callers delivered after it in the same loop turn still get theirs
    def empty_next(tx: StoreTx) -> int:
        return next(iter([]))

    async with holding(writer):
        stopped = writer.submit(empty_next)
        after = writer.submit(lambda tx: 2)
    done, _ = await asyncio.wait({stopped, after}, timeout=30)
    assert after in done and after.result() == 2
    assert stopped in done
    error = stopped.exception()
    assert isinstance(error, RuntimeError) and isinstance(error.__cause__, StopIteration)
