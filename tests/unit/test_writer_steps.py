"""``BatchWriter.submit(job, steps=commit)``: a pass commit's job whose commit the store can make
without the job (``LoneStepCommits``: PostgreSQL's lone step commit) is committed so when it is
a loop commit's only job; the store refusing it (``WouldBlock``: not such a commit, nothing
sent) has the job committed on the loop as any; ``Replay`` has the job made carefully on the
thread. The store is ``test_writer_loop``'s fake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.unit.test_writer_loop import LoopStore, recorder

from stepline.engine.writer import BatchWriter
from stepline.store.interface import Replay, WouldBlock
from stepline.store.records import PassCommit


class LoneStore(LoopStore):
    """A ``LoopStore`` that commits a lone step commit without its job: ``alone`` raised
    instead, if set."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: Exception | None = None
        self.lone: list[PassCommit] = []
        self.times: list[float | None] = []  # the ``now`` each lone commit was given
        self.loops: list[asyncio.AbstractEventLoop | None] = []  # and the ``loop``

    async def commit_steps_on_loop(
        self,
        commit: PassCommit,
        now: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> bool:
        if self.alone is not None:
            raise self.alone
        self.lone.append(commit)
        self.times.append(now)
        self.loops.append(loop)
        return True


async def test_a_lone_step_commit_goes_without_its_job_where_the_store_can() -> None:
    store = LoneStore()
    writer = BatchWriter(store)
    commit = PassCommit("r1", "t1")
    done: list[int] = []
    try:
        await asyncio.sleep(0)  # nothing else ready: a batch of its own, on the loop
        written = writer.submit(recorder(done)(1), alone=True, steps=commit)
        assert await written is True
        assert store.lone == [commit] and done == []  # the job never ran
        assert (writer.loop_commits, writer.transactions, writer.jobs) == (1, 1, 1)
    finally:
        writer.close()


async def test_a_lone_step_commit_is_given_the_time_its_job_gives_commit_pass() -> None:
    # the store marks the run running with it (the pass's first commit): before, the store had
    # no time to mark it with, and a pass's first commit always went as a job
    store = LoneStore()
    writer = BatchWriter(store)
    commit = PassCommit("r1", "t1")
    try:
        await asyncio.sleep(0)
        written = writer.submit(recorder([])(1), alone=True, steps=commit, now=1234.5)
        assert await written is True
        assert store.lone == [commit] and store.times == [1234.5]
    finally:
        writer.close()


async def test_a_lone_step_commit_is_given_its_callers_loop() -> None:
    # the loop the caller holds (a pass's), or the running one looked up: the store needs
    # not look it up again (asyncio.get_running_loop: a getpid system call each)
    store = LoneStore()
    writer = BatchWriter(store)
    loop = asyncio.get_running_loop()
    try:
        for given in (loop, None):
            await asyncio.sleep(0)
            written = writer.submit(
                recorder([])(1), alone=True, steps=PassCommit("r", "t"), loop=given
            )
            assert await written is True
        assert store.loops == [loop, loop]
    finally:
        writer.close()


async def test_jobs_batched_together_are_committed_as_jobs() -> None:
    store = LoneStore()
    writer = BatchWriter(store)
    done: list[int] = []
    job = recorder(done)
    try:
        first = writer.submit(job(1), steps=PassCommit("r1", "t1"))
        second = writer.submit(job(2), steps=PassCommit("r2", "t2"))
        assert (await first, await second) == (1, 2)
        assert store.lone == [] and done == [1, 2] and store.batches == [2]
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _lone_commit_failing(
    error: Exception,
) -> AsyncIterator[tuple[LoneStore, BatchWriter, list[int]]]:
    """A lone step commit the store answers with ``error``: its job is still written (its
    result 1); the block then sees where it went."""
    store = LoneStore()
    store.alone = error
    writer = BatchWriter(store)
    done: list[int] = []
    try:
        await asyncio.sleep(0)
        written = writer.submit(recorder(done)(1), alone=True, steps=PassCommit("r1", "t1"))
        assert await written == 1
        yield store, writer, done
    finally:
        writer.close()


async def test_a_lone_step_commit_the_store_refuses_is_its_jobs() -> None:
    async with _lone_commit_failing(WouldBlock("not a commit of step results alone")) as (
        store,
        writer,
        done,
    ):
        assert store.lone == [] and done == [1] and store.batches == [1]  # on the loop
        assert (writer.loop_commits, writer.loop_refusals) == (1, 0)


async def test_a_lone_step_commit_that_committed_nothing_is_its_job_made_carefully() -> None:
    async with _lone_commit_failing(Replay("the lease was lost")) as (store, writer, done):
        assert done == [1] and store.batches == []  # on the thread
        assert (writer.replays, writer.loop_commits, writer.transactions) == (1, 0, 1)
