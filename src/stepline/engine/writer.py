"""Group commit: one writer thread turns whatever write jobs are pending into one transaction.

Jobs queue (a thread-safe queue) while a transaction is in flight; the next transaction takes them
all (up to ``max_batch``). Each job's result is handed back only after its transaction committed,
so nothing is acknowledged before it is durable, and N concurrent runs share one fsync instead of
paying N. Jobs may come from any event loop and any thread at once: a result is delivered in the
loop of the caller that is waiting for it (``call_soon_threadsafe``, once per loop per
transaction), or to a thread blocked in ``submit_sync``.

The writer thread is the writer's own (started at its first job) and waits on a queue of
wake-ups: a hop to it and back is one thread wake-up each way and nothing more (a thread pool
added a work item, a future and their locks to each hop, and the pool's bookkeeping held the
GIL while the event loop woke up for the result). At interpreter exit, as a pool's thread
would, it finishes the jobs queued before it stops.

A job that fails on its own (a lost lease), or that the store refuses for good (a read-only
database: a ``StoreError``, never the backend's raw exception), is rolled back alone and the rest
of its batch commits. A failure the store reads as ``StoreUnavailable`` (disk full, I/O error,
...) loses the whole transaction: every job of the batch gets a ``StoreUnavailable`` of its own,
never the backend's raw exception, and nothing of the batch is acknowledged. A transaction the
store ended on a conflict with another (``Conflict``: a deadlock, a serialization failure;
nothing of it committed) is made again, a few times, before its batch is lost.

A store that can (``OptimisticStore``: PostgreSQL, SQLite) first applies a batch without a
savepoint per job (PostgreSQL: its statements sent together; SQLite: no SAVEPOINT and RELEASE a
verb); if anything fails in it (``Replay``: a job raised, a lease was
lost), nothing of it was committed and the batch is made again as above, each job in its own
savepoint. A job may therefore be applied twice: its effects outside the transaction must be
its return value (or be harmless to repeat). A job that leaves that careful transaction unable
to commit (PostgreSQL: a statement outside its savepoints failed and the job went on) makes
the store raise ``Replay`` instead of committing nothing silently; each job of the batch is
then applied alone.

A store that can commit from an event loop without blocking it (``LoopCommits``: PostgreSQL)
is given the jobs of an idle writer on the loop itself, when they are at most ``loop_batch``
and all of the loop that kicks the writer: they run there and the commit's round trip is
awaited there, with no hop to the writer thread and back (a lone step's commit). The commit
is no task: its coroutine starts in the kick itself and is resumed by the socket's readiness
callback (``stepline._driven``), two turns of the loop fewer per commit. Jobs of that
loop queued meanwhile wait for it, then the thread takes them (group commit under load is the
thread's); a job of another loop or thread starts the thread at once, beside it (never held up
by a busy loop), and the jobs of the commit's loop the thread finds are held until it ended (a
run's jobs come from one loop: they stay in order).
The store refusing to wait on the loop (``WouldBlock``: nothing was sent) hands the batch to
the thread, to be made as any; ``Replay`` hands it to the thread to be made carefully. Kinds of
job refused for a read before their commit, again and again, are left to the thread for a while
(``_reading_kinds``), not run on the loop first in vain. A loop commit whose loop will not run
it again (closed) is given up: its outcome is unknown, and the thread takes the queue. The kick
and the loop commit run in an empty context (never a caller's).

A job submitted ``unordered`` (the worker's polls: lease, heartbeat) holds up no commit of step
results alone (``_steps_alone``): those are made on their loop while the thread makes nothing
but such jobs, or beside one queued with them (put aside for the thread); any other job waits.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from stepline._driven import Driven, driving
from stepline.engine._reading_kinds import ReadingKinds
from stepline.engine._writer_jobs import (
    Job,
    Outcome,
    _close_at_exit,
    _Flight,
    _nothing_ready,
    _own_copy,
    _Pending,
    _serve,
    _settle,
    _settle_all,
    _settle_done,
    _steps_alone,
)
from stepline.errors import StoreUnavailable
from stepline.store.capabilities import OptimisticStore
from stepline.store.interface import (
    Conflict,
    LoneStepCommits,
    LoopCommits,
    Replay,
    Store,
    StoreTx,
    WouldBlock,
)
from stepline.store.records import PassCommit

T = TypeVar("T")

log = logging.getLogger("stepline.writer")
CONFLICT_RETRIES = 3  # a careful transaction ended on a conflict (``Conflict``) made again


class BatchWriter:
    """Serializes this process's writes to a Store and batches them into shared transactions."""

    def __init__(self, store: Store, max_batch: int = 512, loop_batch: int = 8) -> None:
        """``loop_batch``: the most jobs committed on their loop (``LoopCommits``); 0: never."""
        self._store = store
        # decided once: isinstance on a runtime-checkable Protocol costs ~8.5 µs a call
        self._optimistic = store if isinstance(store, OptimisticStore) else None
        self._on_loop = store if loop_batch > 0 and isinstance(store, LoopCommits) else None
        on_loop = self._on_loop
        self._lone_steps = on_loop if isinstance(on_loop, LoneStepCommits) else None
        self._loop_batch = loop_batch
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None  # started at the first drain
        # the writer thread's wake-ups: this writer (drain it) or None (stop)
        self._wakes: queue.SimpleQueue[BatchWriter | None] = queue.SimpleQueue()
        self._at_exit = partial(_close_at_exit, weakref.ref(self))
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _draining, _kicks and _closed
        self._draining = False  # a drain is submitted to or running on the writer thread
        self._overtakable = False  # its batch in hand (none yet once woken): unordered only
        self._flight: _Flight | None = None  # a commit in flight on a loop: its batch and loop
        self._looping: Driven | None = None  # its coroutine, once its first step returned
        # batches a loop commit gave up, for the thread first: (batch, to be made carefully)
        self._handed: list[tuple[list[_Pending], bool]] = []
        self._kicks: set[asyncio.AbstractEventLoop] = set()  # loops with a _kick scheduled
        # jobs of a loop commit's loop the thread took meanwhile: made after it (its runs')
        self._held: list[_Pending] = []
        self._closed = False
        self.transactions = 0
        self.jobs = 0
        self.replays = 0  # optimistic transactions made again with a savepoint per job
        self.conflicts = 0  # careful transactions made again after a conflict (``Conflict``)
        self.loop_commits = 0  # transactions committed on their loop (``LoopCommits``)
        self.loop_refusals = 0  # batches the store would not commit on the loop (WouldBlock)
        self._reading = ReadingKinds()  # jobs that need a read: the thread's (under _lock)

    async def write(self, job: Callable[[StoreTx], T], *, unordered: bool = False) -> T:
        """Run ``job(tx)`` in the next transaction; returns once that transaction committed.
        An exception raised by the job is raised here (the job's own changes are rolled back;
        the other jobs of the batch still commit). Safe from any event loop in any thread.
        Cancelling the caller does not withdraw a job already queued. ``unordered``: jobs
        submitted after it need not wait for it (``submit``)."""
        return await self.submit(job, unordered=unordered)

    def submit(
        self,
        job: Callable[[StoreTx], T],
        then: Callable[[T], object] | None = None,
        *,
        alone: bool = False,
        steps: PassCommit | None = None,
        now: float | None = None,
        unordered: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Future[T]:
        """``write`` without awaiting: the future (of the running loop) gets the job's result
        once its transaction committed, or its error. Raises ``RuntimeError`` when closed.
        ``then(result)`` is called in the loop right before the result is set (not for an
        error, nor once the caller stopped waiting): what it wakes runs at the loop's next
        turn, ahead of the caller, not a turn after it. ``alone``: the caller submits no other
        job before it awaits this one (a pass's commit); when the loop has no other callback
        ready, none can queue a job to join this one before the writer's kick, so what the
        kick would do is done now, in this callback, not a loop turn later: the loop commit
        begins (``_flies_now``), or the thread is woken to take the job (``_drains_now``).
        ``steps``: the pass commit ``job`` applies (its result: True, applied), committed
        without the job by a store that can (``LoneStepCommits``) when it is a loop commit's
        only job; ``now``: the time ``job`` gives that commit (``commit_pass``'s).
        ``unordered``: no other job needs it made first (the worker's polls: see the
        module), so none waits for it. ``loop``: the running loop, when the caller holds it
        (``asyncio.get_running_loop`` makes a ``getpid`` system call)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Pending(job, loop, future, then, steps, now, unordered), alone)
        return future

    def submit_sync(self, job: Callable[[StoreTx], T]) -> T:
        """``write`` for a thread with no running event loop: blocks until committed."""
        future: Future[T] = Future()
        self._enqueue(_Pending(job, None, future))
        return future.result()

    def _enqueue(self, pending: _Pending, alone: bool = False) -> None:
        loop = pending.loop
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            if alone and loop is not None and self._flies_now(loop, pending):
                if self._reading.kinds and self._reading.skips(pending.job):
                    self._queue.put(pending)  # its kind is the thread's: one batch counted
                    if not self._draining:
                        self._start_drain()
                    return
                flight = self._flight = _Flight([pending], loop)  # busy from now on
            else:
                flight = None
                self._queue.put(pending)
                if self._flight is not None and self._stranded():
                    self._abandon()
                if self._draining and not (_steps_alone(pending) and self._beside_thread()):
                    return  # the thread takes it after what it has to make
                if self._flight is not None:
                    # never held up by another loop
                    if loop is not self._loop_of_flight() and not self._draining:
                        self._start_drain()
                    return
                if loop is None:  # a blocked thread: start the drain now
                    self._start_drain()
                    return
                if loop in self._kicks:
                    return
                if alone and self._drains_now(loop):  # no job could join it before a kick
                    self._start_drain()
                    return
                self._kicks.add(loop)
        if flight is not None:  # in an empty context, as the kick's (never the caller's)
            contextvars.Context().run(self._fly, flight)
            return
        # The drain starts once this loop has run the callbacks that are ready: the jobs its
        # other tasks queue meanwhile join the same transaction, and the writer thread does not
        # wake up to fight this loop for the GIL. Only this loop's jobs wait for this kick.
        # (in an empty context: never the caller's)
        loop.call_soon(self._kick, loop, context=contextvars.Context())

    def _flies_now(self, loop: asyncio.AbstractEventLoop, pending: _Pending) -> bool:
        """Whether ``pending``, submitted ``alone``, is a batch of its own now, with no kick
        (under ``_lock``): the writer is idle (or its thread makes ``unordered`` jobs only and
        ``pending`` commits step results alone) with nothing queued, and the loop has no
        other callback ready, so no job could join it before a kick. Committed on its loop
        unless its kind is left to the thread (``_reading``)."""
        return (
            self._on_loop is not None
            and self._flight is None
            and (
                _steps_alone(pending) and self._beside_thread()
                if self._draining
                else not (self._handed or self._held)
            )
            and self._queue.empty()
            and loop not in self._kicks
            and _nothing_ready(loop)
            and not driving()
        )

    def _drains_now(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the thread takes a job submitted ``alone`` at once, with no kick (under
        ``_lock``, the writer idle, the job queued): a store that does not commit on the loop
        (its jobs are the thread's in any case), and the loop has no other callback ready, so
        no job of it could join the batch before a kick (as ``_flies_now``): one turn of the
        loop fewer per commit, and the thread's wake-up begins while this turn ends."""
        return self._on_loop is None and _nothing_ready(loop) and not driving()

    def _beside_thread(self) -> bool:
        """Whether the jobs a loop submits now may be committed on it while the thread drains
        (under ``_lock``, draining): what the thread has to make before them, its batch in
        hand (``_overtakable``), the batches handed to it and the jobs held for it, is
        ``unordered`` jobs only (the queue is the caller's to look at)."""
        held, handed = self._held, self._handed
        return (
            self._overtakable
            and (not held or all(pending.unordered for pending in held))
            and (not handed or all(p.unordered for batch, _ in handed for p in batch))
        )

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._kicks.discard(loop)
            if self._flight is not None or not self._waiting():
                return
            if self._draining and (self._queue.empty() or not self._beside_thread()):
                return  # the thread takes them after what it has to make
            batch = self._loop_batch_of(loop)
            if batch is None:
                if not self._draining:  # else the thread takes them after what it has
                    self._start_drain()
                return
            flight = _Flight(batch, loop)
            self._flight = flight  # busy from now on
            if self._handed and not self._draining:  # unordered jobs put aside: beside it
                self._start_drain()
        self._fly(flight)

    def _fly(self, flight: _Flight) -> None:
        """Commit ``flight`` on its loop, run at once, in this callback (no task: ``Driven``),
        outside the lock."""
        driven = Driven(self._commit_on_loop(flight), flight.loop)
        with self._lock:
            if self._flight is flight:  # still in flight (else it ended in its first step)
                self._looping = driven

    def _stranded(self) -> bool:
        """Whether the loop commit in flight waits on a loop that will never run it (closed)
        (under ``_lock``). One on a stopped loop is kept: the loop may run again and end it,
        and its loop's later jobs wait for it (held, ``_take``) while the thread makes the
        others'; given up, the thread would make those later jobs first."""
        flight = self._flight
        assert flight is not None
        return flight.loop.is_closed()

    def _abandon(self) -> None:
        """Give up the loop commit in flight (``_stranded``): its outcome is unknown, the
        writer is idle again (under ``_lock``). Its jobs' futures are all its closed loop's
        (``_loop_batch_of``): nobody can wait for them there."""
        self._looping = self._flight = None
        if self._waiting() and not self._draining:
            self._start_drain()

    def _loop_of_flight(self) -> asyncio.AbstractEventLoop | None:
        flight = self._flight
        return None if flight is None else flight.loop

    def _waiting(self) -> bool:
        """Whether jobs wait for the thread (under ``_lock``)."""
        return bool(self._handed or self._held) or not self._queue.empty()

    def _loop_batch_of(self, loop: asyncio.AbstractEventLoop) -> list[_Pending] | None:
        """The queued jobs, taken to be committed on ``loop`` (under ``_lock``, idle or the
        thread making ``unordered`` jobs: then only commits of step results alone), or None
        (left to the thread: a store that cannot, too many, or not all of ``loop``).
        ``unordered`` jobs queued with such commits only are handed to the thread (polls:
        they read before their commit, the loop would refuse the batch with them)."""
        if self._on_loop is None or self._queue.qsize() + len(self._held) > self._loop_batch:
            return None
        batch = self._take()  # (the thread takes only under _lock, as here)
        if self._draining or (len(batch) > 1 and any(pending.unordered for pending in batch)):
            rest = [pending for pending in batch if not pending.unordered]
            if rest and all(_steps_alone(pending) for pending in rest):
                if len(rest) < len(batch):
                    self._handed.append(([p for p in batch if p.unordered], False))
                batch = rest
            elif self._draining:
                self._handed.append((batch, False))
                return None
        if all(pending.loop is loop for pending in batch) and not self._reading.skip(
            pending.job for pending in batch
        ):
            return batch
        self._handed.append((batch, False))
        return None

    async def _commit_on_loop(self, flight: _Flight) -> None:
        """Commit ``flight``'s batch on this loop (``LoopCommits``), results handed back here
        (run by ``Driven``, from the kick on): a lone step commit alone, without its job, if
        the store can (``LoneStepCommits``; ``WouldBlock``: not such a commit, or not now,
        nothing was sent), else the jobs."""
        batch = flight.batch
        store = self._on_loop
        assert store is not None
        pending = batch[0]
        steps, lone = pending.steps, self._lone_steps
        try:
            results: list[Any] | None = None
            if steps is not None and lone is not None and len(batch) == 1:
                try:
                    results = [await lone.commit_steps_on_loop(steps, pending.now, pending.loop)]
                except WouldBlock:
                    pass
            if results is None:
                results = await store.commit_on_loop([p.job for p in batch])
        except WouldBlock as exc:  # nothing was sent: the thread makes it as any batch
            self.loop_refusals += 1
            if exc.job is not None:
                with self._lock:
                    self._reading.refused(batch[exc.job].job)
            outcomes = await self._hand_over(batch, careful=False)
        except Replay:  # nothing committed: made again carefully
            self.replays += 1
            outcomes = await self._hand_over(batch, careful=True)
        except Exception as exc:
            outcomes = self._lost(exc, len(batch))
        except BaseException:  # cancelled during the round trip: its outcome is unknown
            unknown = StoreUnavailable("the commit's outcome is unknown: it was cancelled")
            _settle_all([(p, (False, _own_copy(unknown))) for p in batch])
            self._loop_ended(flight)
            raise
        else:
            self.transactions += 1
            self.loop_commits += 1
            self.jobs += len(batch)
            single = len(batch) == 1  # the usual
            if self._reading.kinds:
                with self._lock:
                    if single:
                        self._reading.forget(pending.job)
                    else:
                        self._reading.committed([p.job for p in batch])
            if single:
                _settle_done(pending, results[0])
            else:
                _settle_all([(p, (True, r)) for p, r in zip(batch, results, strict=True)])
            outcomes = None
        if outcomes is not None:
            _settle_all(list(zip(batch, outcomes, strict=True)))
        self._loop_ended(flight)

    async def _hand_over(self, batch: list[_Pending], careful: bool) -> list[Outcome] | None:
        """Give ``batch`` to the writer thread (None: it delivers the outcomes); once the
        writer is closed (its thread may be gone), made here on a thread of the loop's."""
        with self._lock:
            if not self._closed:
                self._handed.append((batch, careful))
                return None
        apply = self._apply_carefully if careful else self._apply
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, apply, [pending.job for pending in batch])

    def _loop_ended(self, flight: _Flight) -> None:
        with self._lock:
            if self._flight is flight:
                self._looping = self._flight = None
            if not self._draining and self._waiting():
                self._start_drain()  # what queued meanwhile: a batch, the thread's

    def _start_drain(self) -> None:
        """Wake the writer thread to drain the queue (under ``_lock``)."""
        self._draining = True
        # nothing in hand yet: what it will take is queued, handed or held (``_beside_thread``)
        self._overtakable = self._on_loop is not None
        if self._thread is None:
            wakes, at_exit = self._wakes, self._at_exit

            def dropped(_: weakref.ref[BatchWriter]) -> None:  # never closed: the thread ends
                wakes.put(None)
                atexit.unregister(at_exit)

            # the writer is held by a wake-up until its drain ends, never by the idle thread
            # (a writer dropped without close is collected, and its thread ends)
            self._thread = threading.Thread(
                target=_serve,
                args=(wakes, weakref.ref(self, dropped)),
                name="stepline-writer",
                daemon=True,
            )
            self._thread.start()
            atexit.register(at_exit)
        self._wakes.put(self)

    # -- the writer thread ----------------------------------------------------------------------
    def _drain(self) -> None:
        """Apply the batches for the thread until none is left. The next batch is taken (or
        the drain ended) before a batch's results are delivered: a job its callers submit once
        woken (a pass's first commit, right after the send's job that leased its run) finds
        the writer idle when nothing else waits for the thread, and is committed on its loop,
        never queued for a thread about to end its drain (the GIL handed to the woken loop
        by the wake-up's write, that job was the thread's in about half the passes at load)."""
        taken: tuple[list[_Pending], bool] | None = None
        try:
            with self._lock:
                taken = self._next_batch()
            while taken is not None:
                batch, careful = taken
                taken = None
                apply = self._apply_carefully if careful else self._apply
                outcomes = apply([p.job for p in batch])
                with self._lock:  # a job queued after this take is seen at the next, or drains anew
                    taken = self._next_batch()
                self._deliver(batch, outcomes)
        except BaseException:  # cannot happen (_apply and _deliver catch everything they meet)
            with self._lock:
                if taken is not None:  # taken, not applied: the thread's first batch again
                    self._handed.insert(0, taken)
                self._draining = self._overtakable = False
            raise

    def _next_batch(self) -> tuple[list[_Pending], bool] | None:
        """The thread's next batch and whether it is made carefully (under ``_lock``), or None:
        nothing queued, handed, nor held for the thread, the drain ended. Whether the jobs of a
        loop may be committed on it meanwhile (``_overtakable``) is decided here: only beside
        a batch of ``unordered`` jobs."""
        if self._handed:
            taken = self._handed.pop(0)
        else:
            batch = self._take()
            if not batch:
                self._draining = self._overtakable = False
                return None
            taken = batch, False
        self._overtakable = self._on_loop is not None and all(p.unordered for p in taken[0])
        return taken

    def _taking_held(self) -> bool:
        """Whether the held jobs are the thread's now (under ``_lock``)."""
        return bool(self._held) and (self._flight is None or self._closed)

    def _take(self) -> list[_Pending]:
        """The next batch (under ``_lock``): held jobs first once their loop commit ended;
        while one is in flight (and the writer is open), the jobs of its loop are held, never
        made beside it (a run's jobs come from one loop: they stay in order)."""
        # the queue's only consumer: what empty() says stays true until it takes (no
        # queue.Empty raised and caught at the end of every take, twice per lone job)
        pending, most = self._queue, self._max_batch
        batch: list[_Pending] = []
        flight = self._flight
        if flight is None and not self._held:  # the usual: no loop commit, nothing held
            while not pending.empty() and len(batch) < most:
                batch.append(pending.get_nowait())
            return batch
        if self._taking_held():
            batch, self._held = self._held[:most], self._held[most:]
        hold = None if self._closed or flight is None else flight.loop
        while not pending.empty() and len(batch) < most:
            job = pending.get_nowait()
            if hold is not None and job.loop is hold:
                self._held.append(job)
            else:
                batch.append(job)
        return batch

    def _apply(self, jobs: list[Job]) -> list[Outcome]:
        store = self._optimistic
        if store is not None:
            try:
                with store.optimistic_transaction() as tx:
                    results = [job(tx) for job in jobs]
            except Replay:
                self.replays += 1  # nothing was committed: made again below
            except Exception as exc:
                return self._lost(exc, len(jobs))
            except BaseException as exc:
                return [(False, exc)] * len(jobs)
            else:
                self.transactions += 1
                self.jobs += len(jobs)
                return [(True, result) for result in results]
        return self._apply_carefully(jobs)

    def _apply_carefully(self, jobs: list[Job], conflicts: int = 0) -> list[Outcome]:
        """The jobs in one transaction, each verb in its savepoint; if a job left the whole
        transaction unable to commit (``Replay``: nothing committed), each job alone; if the
        store ended it on a conflict with another transaction (``Conflict``: nothing
        committed), the same again, up to ``CONFLICT_RETRIES`` times, then lost."""
        store = self._store
        outcomes: list[Outcome] = []
        try:
            with store.transaction() as tx:
                for job in jobs:
                    try:
                        outcomes.append((True, job(tx)))
                    except Exception as exc:
                        failed = store.store_error(exc)
                        if isinstance(failed, StoreUnavailable):
                            raise  # the transaction is lost as a whole (maybe rolled back)
                        # a job's own error, or the store refusing it for good (read-only):
                        # the job's verb was rolled back alone, never a raw driver exception
                        outcomes.append((False, exc if failed is None else _own_copy(failed)))
        except Conflict as exc:
            if conflicts < CONFLICT_RETRIES:
                self.conflicts += 1
                return self._apply_carefully(jobs, conflicts + 1)
            cause = exc.__cause__
            return self._lost(cause if isinstance(cause, Exception) else exc, len(jobs))
        except Replay as exc:
            if len(jobs) == 1:
                return [(False, exc)]
            self.replays += 1
            return [outcome for job in jobs for outcome in self._apply_carefully([job])]
        except Exception as exc:  # the transaction itself failed: nothing is acknowledged
            return self._lost(exc, len(jobs))
        except BaseException as exc:
            return [(False, exc)] * len(jobs)
        self.transactions += 1
        self.jobs += len(jobs)
        return outcomes

    def _lost(self, error: Exception, jobs: int) -> list[Outcome]:
        """The outcomes of a batch whose transaction failed as a whole."""
        failed = self._store.store_error(error)
        if failed is None:
            return [(False, error)] * jobs
        return [(False, _own_copy(failed)) for _ in range(jobs)]

    @staticmethod
    def _deliver(batch: list[_Pending], outcomes: list[Outcome]) -> None:
        if len(batch) == 1:  # the usual under no load: one caller
            pending = batch[0]
            if isinstance(pending.future, Future):
                _settle(pending.future, outcomes[0])
            elif pending.loop is not None:
                try:
                    pending.loop.call_soon_threadsafe(_settle_all, [(pending, outcomes[0])])
                except RuntimeError:  # the caller's loop is closed: nobody waits for it
                    pass
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Outcome]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            future = pending.future
            if isinstance(future, Future):
                _settle(future, outcome)
            elif pending.loop is not None:
                by_loop.setdefault(pending.loop, []).append((pending, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the caller's loop is closed: nobody waits for these results
                pass

    def close(self) -> None:
        """Stop the writer thread (jobs already queued are finished first; a commit in flight
        on a loop ends when that loop runs it, or with an unknown outcome if it is
        cancelled)."""
        with self._lock:
            self._closed = True
            if not self._draining and self._waiting():
                self._start_drain()  # beside a loop commit in flight, if any: never stranded
            thread = self._thread
        if thread is None:
            return
        self._wakes.put(None)  # after the drains asked before: served in order
        thread.join()
        atexit.unregister(self._at_exit)
