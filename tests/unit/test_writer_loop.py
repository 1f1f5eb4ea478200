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
from typing import Any, TypeVar, cast

import pytest

from stepline.engine.writer import BatchWriter
from stepline.errors import StoreUnavailable
from stepline.store.interface import Replay, StoreTx, WouldBlock
from stepline.store.memory import MemoryStore
from stepline.store.records import PassCommit

J = TypeVar("J")
WAIT = 30.0  # a bound on each hand-shake between the two loops' threads (never reached)


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
    """Until the writer thread's drain has ended: while it applies a batch, a job queued is
    its own (no kick, never the loop's); it ends its drain before it delivers its last batch's
    results. Polled under a deadline: the thread ends its drain on its own."""
    deadline = time.monotonic() + 30
    while writer._draining:
        assert time.monotonic() < deadline, "the writer thread's drain did not end"
        # real time: a poll of the writer thread's flag, under the deadline
        await asyncio.sleep(0.001)


def reads(tx: StoreTx) -> str:
    """A job that reads before its commit (the kind ``left_to_the_thread`` refuses)."""
    return "read"


def writes(tx: StoreTx) -> str:
    """A job of another kind."""
    return "written"


async def left_to_the_thread(store: LoopStore, writer: BatchWriter) -> None:
    """Make ``reads`` the thread's for 16 batches: refused twice in a row on the loop (a read
    before the commit), as the second job of a batch; ``store`` refuses nothing after."""
    store.refuse = WouldBlock("a read before the commit", job=1)
    for _ in range(2):
        await idle(writer)
        assert await asyncio.gather(writer.write(writes), writer.write(reads)) == [
            "written",
            "read",
        ]
    store.refuse = None


def _writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "stepline-writer"}


def held() -> tuple[LoopStore, BatchWriter, asyncio.Future[None]]:
    """A writer of a ``LoopStore`` whose round trips wait until the test sets the reply."""
    store = LoopStore()
    store.reply = reply = asyncio.get_running_loop().create_future()
    return store, BatchWriter(store), reply


def recorder(done: list[J]) -> Callable[[J], Callable[[StoreTx], J]]:
    def job(n: J) -> Callable[[StoreTx], J]:
        def record(tx: StoreTx) -> J:
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


def test_a_job_queued_as_the_loop_shuts_down_is_committed_in_the_kick() -> None:
    """The loop shut down right after the job was queued (``asyncio.run`` ending): the kick
    runs in the shutdown's turns and the commit begins in it (no task that the shutdown
    could cancel before it ran): the job is made once, on the loop."""
    writer = BatchWriter(LoopStore())
    done: list[int] = []

    async def submit_and_leave() -> None:
        writer.submit(recorder(done)(1))  # nobody waits for it

    asyncio.run(submit_and_leave())
    writer.close()
    assert done == [1]
    assert (writer.loop_commits, writer.transactions) == (1, 1)


async def test_a_job_that_needed_a_read_goes_to_the_thread_for_a_while() -> None:
    """Refusals naming their job (a read before the commit): a kind of job (its function's
    code) refused twice in a row is the thread's for 16 batches, not made on the loop first
    in vain; others still go on the loop; then it is tried on the loop again."""
    store = LoopStore()
    writer = BatchWriter(store)
    try:
        await left_to_the_thread(store, writer)
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


async def test_a_committed_loop_batch_is_never_made_again_when_another_loop_kicks() -> None:
    """Review F1. Two loops share one writer (senders in several loops: test_write_path_threads.py).
    Loop 1's commit of A ends; before its task's done callback (``_never_started``) runs, loop
    2 kicks the idle writer, which resets the writer-wide ``_loop_started`` to False for B.
    ``_never_started(A)`` then reads that flag as A's own: it takes A for a task that never
    began, clears ``_looping`` (B's, still in flight) and hands A's batch to the thread, which
    applies A a second time: a committed job committed twice, after later jobs. (The loop
    commit has no task since; the race the test sets up must still apply each job once.)"""
    writer = BatchWriter(LoopStore())
    done: list[str] = []
    job = recorder(done)
    go_b, kicked, a_settled = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def second_loop() -> None:
        async def submit_b() -> str:
            loop = asyncio.get_running_loop()
            written = writer.submit(job("B"))  # the writer is idle: its kick is scheduled
            loop.call_soon(hold)  # runs right after the kick, before B's task starts
            return await written

        def hold() -> None:
            kicked.set()
            a_settled.wait(WAIT)  # loop 1 runs A's done callback meanwhile

        try:
            assert go_b.wait(WAIT)
            asyncio.run(submit_b())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second_loop)
    thread.start()
    loop = asyncio.get_running_loop()

    def a_committed(_: asyncio.Future[str]) -> None:
        # runs in loop 1 after A's commit ended (_loop_ended) and before its task's done
        # callbacks (scheduled when its coroutine returned, after this one)
        go_b.set()
        assert kicked.wait(WAIT)
        loop.call_soon(a_settled.set)  # after what A's end scheduled

    try:
        first = writer.submit(job("A"))
        first.add_done_callback(a_committed)
        assert await first == "A"
        await asyncio.to_thread(thread.join, WAIT)
    finally:
        a_settled.set()
        writer.close()
    assert not errors, errors
    assert sorted(done) == ["A", "B"], done  # each job applied once


async def test_the_writers_loop_commit_is_never_a_branch_of_a_function() -> None:
    """Review F4 (b506f9a + f47dadf): a function whose body calls an App write (``app.cancel_run``,
    ``app.pause_function``: ``writer.write`` in the function's task) schedules the writer's
    kick in the function's context (``call_soon`` copies it), so the loop-commit task the kick
    creates is wrapped by the pass's task-factory hook and adopted as one of the function's
    branches. The pass then waits for it (``settled``) and, when it stops the function's tasks
    (``Branches.stop``: STOP_GRACE after the pass ended, or SUSPEND_GRACE), cancels it mid
    round trip: every job of that batch (other runs' step commits queued in the same loop
    turn) ends with an unknown outcome, its connection closed."""
    from stepline.engine._branches import Branches

    loop = asyncio.get_running_loop()
    store = LoopStore()
    store.reply = loop.create_future()
    writer = BatchWriter(store)
    done: list[str] = []
    job = recorder(done)
    branches = Branches(loop, lambda future: False, lambda: None, sync=False)

    async def function_body() -> str:
        return await writer.write(job("the function's"))  # e.g. app.pause_function(...)

    function = loop.create_task(function_body(), context=branches.context())
    await asyncio.sleep(0)  # the function's task runs: its write is queued, the kick scheduled
    other = writer.submit(job("another run's"))  # the engine's, same loop turn: same batch
    while len(done) < 2:  # the batch's jobs ran on the loop: its round trip is in flight
        await asyncio.sleep(0)
    try:
        adopted = writer._looping in branches.live  # the writer's commit, the function's?
        branches.stop()  # the pass ends
        if not store.reply.done():  # (cancelled with the loop commit that awaited it)
            store.reply.set_result(None)
        try:
            result: object = await other
        except StoreUnavailable as exc:  # "the commit's outcome is unknown: it was cancelled"
            result = exc
    finally:
        function.cancel()
        writer.close()
    assert not adopted and result == "another run's", (adopted, result)


def test_a_write_queued_while_asyncio_run_shuts_down_never_wedges_the_writer() -> None:
    """Review F6. A write submitted and not awaited while ``asyncio.run`` cancels the leftover
    tasks (a task's cleanup, a timer's fire-and-forget write such as ``_executing``'s) makes the
    idle writer kick a loop commit during that cancel phase: its task is created after the
    snapshot of tasks to cancel, so it is never cancelled; its round trip is still in flight
    when the loop closes, and the task stays pending for good. ``_looping`` is never cleared:
    every later write of the process (another ``asyncio.run`` of the same app, as the CLI makes,
    a thread's ``App.send``) only queues, forever."""
    store = LoopStore()
    writer = BatchWriter(store)
    done: list[str] = []
    job = recorder(done)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        store.reply = loop.create_future()  # the round trip's reply: after the loop closed

        async def background() -> None:
            try:
                await asyncio.Event().wait()
            finally:  # cancelled by asyncio.run's shutdown: a write nobody awaits
                writer.submit(job("A"))

        left = loop.create_task(background())  # left running: asyncio.run cancels it
        await asyncio.sleep(0)
        assert not left.done()

    asyncio.run(main())
    b_done = threading.Event()

    def send() -> None:
        writer.submit_sync(job("B"))
        b_done.set()

    other = threading.Thread(target=send, daemon=True)
    other.start()
    committed = b_done.wait(10.0)  # a bound: the thread path commits it in milliseconds
    writer.close()  # (drains what is queued: the thread above ends)
    other.join(WAIT)
    assert committed, "B waited for a loop commit whose loop is gone"


def test_a_blocked_loop_does_not_hold_up_another_threads_write() -> None:
    """Review F3. A loop commit in flight made the writer busy until its loop runs it again: while
    that loop is blocked (a CPU-bound callback or step, a GC pause, a synchronous call), a job
    from another thread (``submit_sync``: ``App.send``) or loop only queues; before f47dadf the
    writer thread committed it at once. One slow loop stalls every write of the process."""
    store = LoopStore()
    writer = BatchWriter(store)
    done: list[str] = []
    job = recorder(done)
    in_flight, release = threading.Event(), threading.Event()

    async def first_loop() -> str:
        loop = asyncio.get_running_loop()
        store.reply = loop.create_future()
        written = writer.submit(job("A"))
        while not done:  # A's jobs ran: its round trip is in flight
            await asyncio.sleep(0)
        store.reply.set_result(None)  # its reply is there, but the loop is busy:
        in_flight.set()
        release.wait(WAIT)  # a blocking call on the loop
        return await written

    thread = threading.Thread(target=asyncio.run, args=(first_loop(),))
    thread.start()
    try:
        assert in_flight.wait(WAIT)
        b_done = threading.Event()
        other = threading.Thread(target=lambda: (writer.submit_sync(job("B")), b_done.set()))
        other.start()
        committed = b_done.wait(10.0)  # a bound: the thread path commits it in milliseconds
    finally:
        release.set()
        thread.join(WAIT)
        other.join(WAIT)
        writer.close()
    assert committed, "B waited for the blocked loop"
    assert done == ["A", "B"]


async def test_a_loops_jobs_wait_for_its_commit_while_the_thread_makes_another_threads() -> None:
    """Review F3: a job of another thread, arriving while a loop commit is in flight, is
    made at once by the thread; a job of that loop queued meanwhile waits for its commit (a
    run's jobs come from one loop: they stay in order)."""
    store, writer, reply = held()
    done: list[int] = []
    job = recorder(done)
    try:
        first = writer.submit(job(1))
        await store.in_flight.wait()
        second = writer.submit(job(2))  # this loop's: after the commit in flight
        # another thread's: made beside it (a bound: on the thread in milliseconds)
        third = asyncio.to_thread(writer.submit_sync, job(3))
        assert await asyncio.wait_for(third, WAIT) == 3
        assert done == [1, 3]
        reply.set_result(None)
        assert await first == 1
        assert await second == 2
        assert done == [1, 3, 2]
    finally:
        writer.close()


def test_a_loop_commit_in_flight_when_its_loop_closes_holds_up_no_later_write() -> None:
    """A job submitted (not awaited) in a loop's last turn: its kick begins the commit there
    (no task: nothing for a shutdown to cancel before it began), and the loop stops with its
    round trip in flight. A thread's write meanwhile is made at once; the loop then closes
    with the reply never read (the outcome of A is unknown: nobody waits for it), and a later
    write is not held up by it (the commit is given up: ``_abandon``)."""
    store = LoopStore()
    writer = BatchWriter(store)
    done: list[str] = []
    job = recorder(done)
    loop = asyncio.new_event_loop()
    try:
        store.reply = loop.create_future()  # never set: the loop closes first

        async def main() -> None:
            writer.submit(job("A"))  # fire-and-forget: the kick runs in the loop's last turn

        loop.run_until_complete(main())
        assert writer._looping is not None and not loop.is_running()
        assert done == ["A"]  # its jobs ran in the kick: the round trip is in flight
        # another thread writes while the loop is stopped: made at once
        other = threading.Thread(target=writer.submit_sync, args=(job("B"),))
        other.start()
        other.join(WAIT)
        assert done == ["A", "B"], done
    finally:
        loop.close()
    try:
        later = threading.Thread(target=writer.submit_sync, args=(job("C"),))
        later.start()
        later.join(WAIT)
        assert not later.is_alive(), "C waited for a loop commit whose loop is closed"
    finally:
        writer.close()
    assert done == ["A", "B", "C"], done
    assert writer._looping is None


def test_a_stopped_loops_later_jobs_wait_for_its_commit_in_flight() -> None:
    """Review 2, R1's ordering note. A loop commit in flight (begun: its round trip sent) on a
    loop that stopped without closing (``run_until_complete`` returned; it may run again) was
    given up when another thread wrote: the thread then made that loop's later job C before
    A's commit had ended (A's commit might land after C, or, made again after a Replay, be
    applied after it). The thread makes the other thread's job at once and holds C."""
    store = LoopStore()
    writer = BatchWriter(store)
    done: list[str] = []
    job = recorder(done)
    loop = asyncio.new_event_loop()
    try:
        store.reply = loop.create_future()

        async def main() -> tuple[asyncio.Future[str], asyncio.Future[str]]:
            first = writer.submit(job("A"))
            await store.in_flight.wait()  # A's round trip is in flight
            return first, writer.submit(job("C"))  # this loop's: after A's commit

        first, later = loop.run_until_complete(main())
        assert writer._looping is not None and not loop.is_running()
        other = threading.Thread(target=writer.submit_sync, args=(job("B"),))
        other.start()
        other.join(WAIT)
        assert done == ["A", "B"], done  # C waits for A's commit, B did not
        store.reply.set_result(None)  # the loop runs again: A's commit ends, then C is made
        both = asyncio.gather(first, later)
        assert loop.run_until_complete(asyncio.wait_for(both, WAIT)) == ["A", "C"]
        assert done == ["A", "B", "C"]
    finally:
        loop.close()
        writer.close()


async def test_a_job_submitted_as_the_threads_last_batch_is_delivered_goes_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the thread ends its drain (nothing else queued) before it delivers its last batch's
    # results: a job the woken caller then submits (a pass's first commit, right after the
    # send's job that leased the run) is committed on its loop. Before, the thread was still
    # draining while it delivered, and took that job (about half the passes at load)
    store = LoopStore()
    writer = BatchWriter(store)
    go_on = threading.Event()
    deliver = BatchWriter._deliver

    def held_after(batch: Any, outcomes: Any) -> None:  # the thread held once it delivered
        deliver(batch, outcomes)
        go_on.wait(WAIT)

    monkeypatch.setattr(BatchWriter, "_deliver", staticmethod(held_after))

    def on_the_thread(tx: StoreTx) -> str:
        store.refuse = None  # only this job is refused on the loop
        return "first"

    try:
        store.refuse = WouldBlock("a read before the commit")  # made on the thread
        assert await writer.write(on_the_thread) == "first"
        assert writer.loop_commits == 0  # the thread (held once it delivered) made it
        second = writer.submit(lambda tx: "second", alone=True)
        await asyncio.wait_for(store.in_flight.wait(), WAIT)  # on the loop, the thread held
        assert await second == "second"
        assert (writer.loop_commits, store.batches) == (1, [1, 1])
    finally:
        go_on.set()
        writer.close()


async def test_a_batch_taken_before_a_delivery_that_raised_is_made_all_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the thread takes its next batch before it delivers one's results: were a delivery to
    # raise (it cannot: a closed loop is caught), that batch is handed back, never stranded
    store = LoopStore()
    store.refuse = WouldBlock("a read before the commit")  # every batch made on the thread
    writer = BatchWriter(store)
    started, release = threading.Event(), threading.Event()
    deliver = BatchWriter._deliver
    raised: list[int] = []

    def once_raising(batch: Any, outcomes: Any) -> None:
        if not raised:
            raised.append(1)
            raise RuntimeError("a delivery that raised")
        deliver(batch, outcomes)

    def first(tx: StoreTx) -> int:
        started.set()
        release.wait(WAIT)
        return 1

    monkeypatch.setattr(BatchWriter, "_deliver", staticmethod(once_raising))
    try:
        writer.submit(first)  # its caller is never answered (its delivery raised)
        assert await asyncio.to_thread(started.wait, WAIT)
        second = writer.submit(lambda tx: 2)  # queued while the thread makes the first
        release.set()
        await asyncio.to_thread(_until, lambda: bool(raised) and not writer._draining)
        third = writer.submit(lambda tx: 3)  # the next drain makes the handed-back batch first
        assert await asyncio.wait_for(asyncio.gather(second, third), WAIT) == [2, 3]
    finally:
        release.set()
        writer.close()


def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (another thread's state) under a deadline."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.001)


class BesideStore(LoopStore):
    """A ``LoopStore`` whose loop commits do not take the memory store's lock (another
    connection: the thread's transaction in hand does not hold them up)."""

    async def commit_on_loop(self, jobs: Sequence[Callable[[StoreTx], Any]]) -> list[Any]:
        self.batches.append(len(jobs))
        if self.refuse is not None:
            raise self.refuse
        return [job(cast(StoreTx, None)) for job in jobs]  # (these tests' jobs read no tx)


def polled(store: LoopStore) -> tuple[Callable[[StoreTx], str], threading.Event, threading.Event]:
    """A job the loop refuses (a read before its commit: the thread's), which the thread
    makes until ``release`` is set (``started`` once it does)."""
    started, release = threading.Event(), threading.Event()

    def poll(tx: StoreTx) -> str:
        store.refuse = None  # only this job is refused on the loop
        started.set()
        release.wait(WAIT)
        return "leased"

    store.refuse = WouldBlock("a read before the commit")
    return poll, started, release


async def test_a_step_commit_goes_on_the_loop_beside_the_threads_unordered_job() -> None:
    # the worker's lease poll (the thread's: it reads before its commit) is submitted
    # unordered: a pass's commit of step results submitted while the thread makes it is
    # committed on the loop beside it. Before, it queued behind it for the thread (1-2 steps
    # of a 100-step run on PostgreSQL went the job path, a hop to the thread and back). Any
    # other job (a resume, say) still waits for the poll: the poll decides with the time it
    # took before (tests/integration/test_flow_edges.py::test_start_timeout_boundary)
    store = BesideStore()
    writer = BatchWriter(store)
    poll, started, release = polled(store)
    try:
        lease = writer.submit(poll, unordered=True)
        assert await asyncio.to_thread(started.wait, WAIT)
        step = writer.submit(lambda tx: "step", alone=True, steps=PassCommit("r", "t"))
        assert await asyncio.wait_for(step, WAIT) == "step"
        assert not lease.done()  # committed while the thread still makes the poll
        assert writer.loop_commits == 1
        kicked = writer.submit(lambda tx: "kicked", steps=PassCommit("r", "t"))  # not alone
        assert await asyncio.wait_for(kicked, WAIT) == "kicked"
        assert not lease.done() and writer.loop_commits == 2
        resume = writer.submit(lambda tx: "resumed")
        for _ in range(3):  # a kick, and a loop commit it began, would be done by now
            await asyncio.sleep(0)
        assert not resume.done()
        release.set()
        assert await asyncio.wait_for(asyncio.gather(lease, resume), WAIT) == [
            "leased",
            "resumed",
        ]
    finally:
        release.set()
        writer.close()


async def test_jobs_wait_for_the_threads_batch_in_hand_unless_it_is_unordered() -> None:
    # a job of the same loop submitted while the thread makes an ordered job of it waits for
    # it (a run's jobs stay in order), and is the thread's
    store = BesideStore()
    writer = BatchWriter(store)
    poll, started, release = polled(store)
    try:
        first = writer.submit(poll)
        assert await asyncio.to_thread(started.wait, WAIT)
        step = writer.submit(lambda tx: "step", alone=True, steps=PassCommit("r", "t"))
        later = writer.submit(lambda tx: "later", steps=PassCommit("r", "t"))
        for _ in range(3):  # a kick, and a loop commit it began, would be done by now
            await asyncio.sleep(0)
        assert not step.done() and not later.done() and store.batches == [1]
        release.set()
        assert await asyncio.wait_for(asyncio.gather(first, step, later), WAIT) == [
            "leased",
            "step",
            "later",
        ]
        assert writer.loop_commits == 0
    finally:
        release.set()
        writer.close()


async def test_an_unordered_job_queued_with_others_is_made_on_the_thread_beside_them() -> None:
    # a kick's batch of a step's commit and the worker's poll (both queued in one turn): the
    # poll (it reads before its commit) goes to the thread, the commit on the loop beside it.
    # Before, the whole batch went to the thread behind the poll's kind (the job path)
    store = BesideStore()
    writer = BatchWriter(store)
    poll, started, release = polled(store)
    store.refuse = None
    try:
        for first_unordered in (True, False):
            started.clear()
            release.clear()
            commit = PassCommit("r", "t")
            if first_unordered:
                lease = writer.submit(poll, unordered=True)
                step = writer.submit(lambda tx: "step", steps=commit)
            else:
                step = writer.submit(lambda tx: "step", steps=commit)
                lease = writer.submit(poll, unordered=True)
            assert await asyncio.wait_for(step, WAIT) == "step"
            assert await asyncio.to_thread(started.wait, WAIT)
            assert not lease.done()
            release.set()
            assert await asyncio.wait_for(lease, WAIT) == "leased"
            await idle(writer)
        assert writer.loop_commits == 2 and store.batches == [1, 1]
    finally:
        release.set()
        writer.close()
