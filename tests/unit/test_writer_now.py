"""``BatchWriter.commit_now(job)``: a lone step's commit (``PassExecutor._lone_round``) awaited in
its caller's own task. On an idle writer of a store that commits on the loop, the round trip is
awaited right there (no ``Driven``, no future of the writer's); the writer is busy meanwhile
(what queues waits, then is the thread's). A busy writer makes it as ``submit`` does; a refusal
or a ``Replay`` has the thread make it; a failure or a cancellation is raised in the caller and
leaves the writer idle. The store is ``test_writer_loop``'s fake."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.test_writer_loop import LoopStore, held, idle, left_to_the_thread, reads, recorder

from stepline.engine.writer import BatchWriter
from stepline.errors import StoreUnavailable
from stepline.store.interface import Replay, StoreTx, WouldBlock
from stepline.store.memory import MemoryStore
from stepline.store.records import PassCommit


async def test_an_idle_writers_job_is_committed_in_the_callers_task() -> None:
    store, writer, reply = held()
    done: list[int] = []
    job = recorder(done)
    try:
        await asyncio.sleep(0)  # whatever the test's start scheduled has run
        now = asyncio.ensure_future(writer.commit_now(job(1)))
        await store.in_flight.wait()
        assert writer._flight is not None  # busy: its round trip is in flight
        assert writer._looping is None  # awaited by the caller's task, no Driven of its own
        later = writer.submit(job(2))
        await asyncio.sleep(0)
        assert done == [1] and not later.done()  # waits for the commit in flight
        reply.set_result(None)
        assert await now == 1
        assert await later == 2
        assert store.batches == [1]  # the later job: the thread's
        assert (writer.loop_commits, writer.transactions, writer.jobs) == (1, 2, 2)
    finally:
        writer.close()


async def test_a_busy_writers_job_waits_its_turn() -> None:
    store, writer, reply = held()
    done: list[int] = []
    job = recorder(done)
    try:
        first = writer.submit(job(1))
        await store.in_flight.wait()
        second = asyncio.ensure_future(writer.commit_now(job(2)))
        await asyncio.sleep(0)
        assert done == [1] and not second.done()
        reply.set_result(None)
        assert (await first, await second) == (1, 2)
        assert done == [1, 2]
    finally:
        writer.close()


async def test_a_refused_job_is_made_on_the_thread() -> None:
    store = LoopStore()
    store.refuse = WouldBlock("a read before the commit")
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)
        assert await writer.commit_now(lambda tx: 3) == 3
        assert store.batches == [1]
        assert (writer.loop_refusals, writer.loop_commits, writer.transactions) == (1, 0, 1)
        store.refuse = None
        await idle(writer)  # the thread's drain has ended
        await asyncio.sleep(0)
        assert await writer.commit_now(lambda tx: 4) == 4  # idle again: on the loop
        assert writer.loop_commits == 1
    finally:
        writer.close()


async def test_a_job_that_raises_raises_its_own_error_once_made_carefully() -> None:
    writer = BatchWriter(LoopStore())

    def fails(tx: StoreTx) -> int:
        raise ValueError("its own")

    try:
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="its own"):
            await writer.commit_now(fails)
        assert (writer.replays, writer.loop_commits) == (1, 0)
        assert await writer.commit_now(lambda tx: 5) == 5
    finally:
        writer.close()


async def test_a_failed_commit_raises_a_copy_of_the_stores_error() -> None:
    store = LoopStore()
    lost = StoreUnavailable("the connection was lost", "db")
    store.refuse = lost
    writer = BatchWriter(store)
    try:
        await asyncio.sleep(0)
        with pytest.raises(StoreUnavailable, match="the connection was lost") as raised:
            await writer.commit_now(lambda tx: 6)
        assert raised.value is not lost  # each caller its own (a raise adds to its traceback)
        assert writer.transactions == 0
        store.refuse = None
        assert await writer.commit_now(lambda tx: 7) == 7
    finally:
        writer.close()


async def test_a_caller_cancelled_during_the_round_trip_leaves_the_writer_idle() -> None:
    store, writer, _ = held()
    try:
        await asyncio.sleep(0)
        now = asyncio.ensure_future(writer.commit_now(lambda tx: 8))
        await store.in_flight.wait()
        now.cancel()
        with pytest.raises(asyncio.CancelledError):
            await now
        assert writer._flight is None
        store.reply = None
        assert await writer.commit_now(lambda tx: 9) == 9
        assert writer.loop_commits == 1
    finally:
        writer.close()


async def test_a_store_that_cannot_commit_on_the_loop_has_the_thread_make_it() -> None:
    writer = BatchWriter(MemoryStore())
    try:
        assert await writer.commit_now(lambda tx: 10) == 10
        assert (writer.loop_commits, writer.transactions) == (0, 1)
    finally:
        writer.close()


async def test_a_job_of_a_kind_left_to_the_thread_counts_one_of_its_batches() -> None:
    """As ``submit(alone=True)`` (test_writer_alone): 16 lone jobs of a kind left to the thread
    are its 16 batches, then it is tried on the loop again."""
    store = LoopStore()
    writer = BatchWriter(store)
    try:
        await left_to_the_thread(store, writer)
        for _ in range(16):
            await idle(writer)
            await asyncio.sleep(0)
            assert await writer.commit_now(reads) == "read"
        assert store.batches == [2, 2]  # none tried on the loop
        await idle(writer)
        await asyncio.sleep(0)
        assert await writer.commit_now(reads) == "read"
        assert store.batches == [2, 2, 1]
    finally:
        writer.close()


class LoneStore(LoopStore):
    """A ``LoopStore`` that commits a lone step commit without its job (``LoneStepCommits``):
    ``alone`` raised instead, if set."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: Exception | None = None
        self.lone: list[PassCommit] = []

    async def commit_steps_on_loop(self, commit: PassCommit) -> bool:
        if self.alone is not None:
            raise self.alone
        self.lone.append(commit)
        return True


async def test_a_lone_step_commit_goes_without_its_job_where_the_store_can() -> None:
    store = LoneStore()
    writer = BatchWriter(store)
    commit = PassCommit("r1", "t1")
    done: list[int] = []
    try:
        await asyncio.sleep(0)
        assert await writer.commit_now(recorder(done)(1), commit) is True
        assert store.lone == [commit] and done == []  # the job never ran
        assert (writer.loop_commits, writer.transactions, writer.jobs) == (1, 1, 1)
    finally:
        writer.close()


async def test_a_lone_step_commit_the_store_refuses_is_its_jobs() -> None:
    store = LoneStore()
    store.alone = WouldBlock("not a commit of step results alone")
    writer = BatchWriter(store)
    done: list[int] = []
    try:
        await asyncio.sleep(0)
        assert await writer.commit_now(recorder(done)(1), PassCommit("r1", "t1")) == 1
        assert store.lone == [] and done == [1] and store.batches == [1]  # on the loop
        assert (writer.loop_commits, writer.loop_refusals) == (1, 0)
    finally:
        writer.close()


async def test_a_lone_step_commit_that_committed_nothing_is_its_job_made_carefully() -> None:
    store = LoneStore()
    store.alone = Replay("the lease was lost")
    writer = BatchWriter(store)
    done: list[int] = []
    try:
        await asyncio.sleep(0)
        assert await writer.commit_now(recorder(done)(1), PassCommit("r1", "t1")) == 1
        assert done == [1] and store.batches == []  # on the thread
        assert (writer.replays, writer.loop_commits, writer.transactions) == (1, 0, 1)
    finally:
        writer.close()
