"""The writer's commits on the event loop (``LoopCommits``): an idle writer gives a few jobs of
one loop to the store there, with no hop to its thread; what queues meanwhile is the thread's
next batch; a refusal (``WouldBlock``) or a ``Replay`` hands the batch to the thread; a failed
or cancelled commit fails its jobs, and ``close`` strands none. The store here is a fake: the
memory store, its jobs committed at once and the round trip's reply awaited on a future the
test sets (tests/store/test_pg_loop_commits.py: PostgreSQL's own)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from stepline.engine.writer import BatchWriter
from stepline.errors import StoreUnavailable
from stepline.store.interface import Replay, StoreTx, WouldBlock
from stepline.store.memory import MemoryStore


class LoopStore(MemoryStore):
    """A memory store that commits on the loop: ``refuse`` raised instead, if set; else the
    jobs applied in a transaction (one raising: ``Replay``, nothing kept), then ``reply``
    awaited (the round trip), if set."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: Exception | None = None
        self.reply: asyncio.Future[None] | None = None
        self.batches: list[int] = []  # the size of each batch given on the loop
        self.in_flight = asyncio.Event()

    async def commit_on_loop(self, jobs: Sequence[Callable[[StoreTx], Any]]) -> list[Any]:
        self.batches.append(len(jobs))
        if self.refuse is not None:
            raise self.refuse
        with self.transaction() as tx:
            try:
                results = [job(tx) for job in jobs]
            except Exception as exc:
                raise Replay(str(exc)) from exc
        self.in_flight.set()
        if self.reply is not None:
            await self.reply
        return results


async def idle(writer: BatchWriter) -> None:
    """Until the writer thread's drain has ended: it delivers a batch's results before it
    looks at its queue once more, and a job queued meanwhile is its own (no kick, never the
    loop's). Polled under a deadline: the thread ends its drain on its own."""
    deadline = time.monotonic() + 30
    while writer._draining:
        assert time.monotonic() < deadline, "the writer thread's drain did not end"
        await asyncio.sleep(0.001)


def _writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "stepline-writer"}


def held() -> tuple[LoopStore, BatchWriter, asyncio.Future[None]]:
    """A writer of a ``LoopStore`` whose round trips wait until the test sets the reply."""
    store = LoopStore()
    store.reply = reply = asyncio.get_running_loop().create_future()
    return store, BatchWriter(store), reply


def recorder(done: list[int]) -> Callable[[int], Callable[[StoreTx], int]]:
    def job(n: int) -> Callable[[StoreTx], int]:
        def record(tx: StoreTx) -> int:
            done.append(n)
            return n

        return record

    return job


async def test_a_lone_job_is_committed_on_its_loop_without_the_thread() -> None:
    before = _writer_threads()
    writer = BatchWriter(LoopStore())
    try:
        assert await writer.write(lambda tx: 7) == 7
        assert await writer.write(lambda tx: 8) == 8
        assert (writer.loop_commits, writer.transactions, writer.jobs) == (2, 2, 2)
        assert _writer_threads() == before  # never a hop to the thread: it was not started
    finally:
        writer.close()


async def test_jobs_queued_during_a_loop_commit_are_the_threads_next_batch() -> None:
    store, writer, reply = held()
    done: list[int] = []
    job = recorder(done)
    try:
        first = writer.submit(job(1))
        await store.in_flight.wait()
        later = [writer.submit(job(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0)
        assert done == [1] and not any(f.done() for f in later)  # they wait for the commit
        reply.set_result(None)
        assert await first == 1
        assert await asyncio.gather(*later) == [2, 3, 4]
        assert done == [1, 2, 3, 4]
        assert store.batches == [1]  # the three were one batch, on the thread
        assert (writer.loop_commits, writer.transactions, writer.jobs) == (1, 2, 4)
    finally:
        writer.close()


async def test_a_refused_batch_is_made_on_the_thread() -> None:
    store = LoopStore()
    store.refuse = WouldBlock("a read before the commit")
    writer = BatchWriter(store)
    try:
        assert await asyncio.gather(writer.write(lambda tx: 1), writer.write(lambda tx: 2)) == [
            1,
            2,
        ]
        assert store.batches == [2]
        assert (writer.loop_refusals, writer.loop_commits, writer.transactions) == (1, 0, 1)
    finally:
        writer.close()


async def test_a_replayed_batch_is_made_carefully_on_the_thread() -> None:
    store = LoopStore()
    writer = BatchWriter(store)

    def fails(tx: StoreTx) -> int:
        raise ValueError("its own")

    try:
        found = await asyncio.gather(
            writer.write(lambda tx: 1), writer.write(fails), return_exceptions=True
        )
        assert found[0] == 1  # the other job of the batch still commits
        assert isinstance(found[1], ValueError)
        assert (writer.replays, writer.loop_commits, writer.transactions) == (1, 0, 1)
    finally:
        writer.close()


async def test_a_failed_loop_commit_fails_each_job_with_its_own_error() -> None:
    store = LoopStore()
    store.refuse = StoreUnavailable("the connection was lost", "db")
    writer = BatchWriter(store)
    try:
        found = await asyncio.gather(
            writer.write(lambda tx: 1), writer.write(lambda tx: 2), return_exceptions=True
        )
        assert all(isinstance(error, StoreUnavailable) for error in found)
        assert found[0] is not found[1]
        assert writer.transactions == 0
    finally:
        writer.close()


async def test_a_cancelled_loop_commit_leaves_its_outcome_unknown() -> None:
    store, writer, _ = held()
    try:
        pending = writer.submit(lambda tx: 1)
        await store.in_flight.wait()
        task = writer._looping
        assert task is not None
        task.cancel()
        with pytest.raises(StoreUnavailable, match="outcome is unknown"):
            await pending
        with pytest.raises(asyncio.CancelledError):
            await task
        store.reply = None
        assert await writer.write(lambda tx: 2) == 2  # the writer goes on
    finally:
        writer.close()


async def test_a_blocked_thread_and_larger_batches_go_to_the_thread() -> None:
    store = LoopStore()
    writer = BatchWriter(store, loop_batch=2)
    try:
        assert await asyncio.to_thread(writer.submit_sync, lambda tx: 1) == 1
        assert await asyncio.gather(*(writer.write(lambda tx, n=n: n) for n in range(3))) == [
            0,
            1,
            2,
        ]
        assert (store.batches, writer.loop_commits, writer.transactions) == ([], 0, 2)
        await idle(writer)
        assert await asyncio.gather(*(writer.write(lambda tx, n=n: n) for n in range(2))) == [
            0,
            1,
        ]
        assert (store.batches, writer.loop_commits) == ([2], 1)
    finally:
        writer.close()


async def test_without_loop_batch_every_job_goes_to_the_thread() -> None:
    store = LoopStore()
    writer = BatchWriter(store, loop_batch=0)
    try:
        assert await writer.write(lambda tx: 1) == 1
        assert (store.batches, writer.loop_commits, writer.transactions) == ([], 0, 1)
    finally:
        writer.close()


async def test_close_during_a_loop_commit_strands_no_job() -> None:
    store, writer, reply = held()
    done: list[int] = []
    job = recorder(done)
    first = writer.submit(job(1))
    await store.in_flight.wait()
    second = writer.submit(job(2))  # queued behind the loop commit
    writer.close()  # the thread commits the queued job before it stops
    assert done == [1, 2]
    assert await second == 2
    reply.set_result(None)
    assert await first == 1  # the loop commit ends when its loop runs it
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(job(3))


async def test_a_job_whose_caller_stopped_waiting_is_committed_all_the_same() -> None:
    store, writer, reply = held()
    done: list[int] = []
    job = recorder(done)
    try:
        first = writer.submit(job(1))
        await store.in_flight.wait()
        second = writer.submit(job(2))
        second.cancel()  # the caller gave up: the job stays queued
        reply.set_result(None)
        assert await first == 1
        assert await writer.write(job(3)) == 3  # committed after the one before it
        assert done == [1, 2, 3]
    finally:
        writer.close()


def test_a_loop_commit_cancelled_before_it_began_is_made_on_the_thread() -> None:
    """The loop shut down right after the writer's kick (``asyncio.run`` ending: its pending
    tasks are cancelled before they ran): nothing of the batch was sent, the thread makes it."""
    writer = BatchWriter(LoopStore())
    done: list[int] = []

    async def submit_and_leave() -> None:
        writer.submit(recorder(done)(1))  # nobody waits for it

    asyncio.run(submit_and_leave())
    writer.close()  # joins the thread, which made the job
    assert done == [1]
    assert (writer.loop_commits, writer.transactions) == (0, 1)


async def test_a_job_that_needed_a_read_goes_to_the_thread_for_a_while() -> None:
    """Refusals naming their job (a read before the commit): a kind of job (its function's
    code) refused twice in a row is the thread's for 16 batches, not made on the loop first
    in vain; others still go on the loop; then it is tried on the loop again."""
    store = LoopStore()
    writer = BatchWriter(store)

    def reads(tx: StoreTx) -> str:
        return "read"

    def writes(tx: StoreTx) -> str:
        return "written"

    try:
        store.refuse = WouldBlock("a read before the commit", job=1)
        for _ in range(2):
            await idle(writer)
            assert await asyncio.gather(writer.write(writes), writer.write(reads)) == [
                "written",
                "read",
            ]
        store.refuse = None
        for _ in range(16):  # its batches left to the thread
            await idle(writer)
            assert await writer.write(reads) == "read"
            await idle(writer)
            assert await writer.write(writes) == "written"  # other kinds: on the loop
        assert (writer.loop_commits, writer.loop_refusals) == (16, 2)
        assert store.batches == [2, 2] + [1] * 16
        await idle(writer)
        assert await writer.write(reads) == "read"  # then tried on the loop again
        assert (store.batches, writer.loop_commits) == ([2, 2] + [1] * 17, 17)
    finally:
        writer.close()


async def test_a_kind_that_reads_only_at_times_stays_on_the_loop() -> None:
    """A kind refused once, then committed on the loop (a pass commit that ended its run,
    then the next run's step commits): never left to the thread."""
    store = LoopStore()
    writer = BatchWriter(store)

    def commit(tx: StoreTx) -> str:
        return "committed"

    try:
        for _ in range(3):
            store.refuse = WouldBlock("a read before the commit", job=0)
            await idle(writer)
            assert await writer.write(commit) == "committed"
            store.refuse = None
            await idle(writer)
            assert await writer.write(commit) == "committed"
        assert (store.batches, writer.loop_commits, writer.loop_refusals) == ([1] * 6, 3, 3)
    finally:
        writer.close()
