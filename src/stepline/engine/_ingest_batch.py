"""Group ingestion: concurrent senders in one event loop share one ingest verb per transaction.

The group-commit writer already gives concurrent write jobs one transaction (one fsync). An
ingest job also pays fixed costs of its own: a savepoint, the index lookups of its event names
(waits, cancel matchers, each a query), the announcement of cancellations, and after the commit
a wake-up of the workers, a change for the live dashboard, a lease attempt for an in-process
worker. With many small senders (an HTTP server answering one event per request), those costs
dominate; so the ingestions of one event loop are gathered: each ``ingest`` call adds its
events to the pending group, and one write job takes, when the writer runs it, every group
pending at that moment and ingests their events with one ``StoreTx.ingest`` call. The events
keep their order (the order in which ``ingest`` was called, then their order in each call).

Each caller gets its own results once the transaction committed (never before), or the error
that lost it: the group shares one verb, so an error that fails the verb fails every caller in
the group (the store's errors are each caller's own copy), as a lost transaction always did,
except a value the store refuses (``StoreRefusedValue``: one caller's data, e.g. a text
PostgreSQL cannot hold): then each caller's events are ingested by a verb of their own, and
only the callers whose own events were refused get the error (never another client's events).

Retried requests (ids given by the sender, ``retried=True``): an event whose id is already
stored, or that an earlier retried event of the same group carries, is not ingested again; its
result is a duplicate's.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from stepline.engine._collector import collector_paused
from stepline.errors import StoreError, StoreRefusedValue, StoreUnavailable
from stepline.store.capabilities import Flushed, FlushesLater
from stepline.store.interface import StoreTx
from stepline.store.records import EventIngest, IngestResult, Lease

if TYPE_CHECKING:
    from stepline.engine._new_runs import Leased
    from stepline.engine.engine import EagerWorker, Engine

    # what the send's job gives once committed: the results, the leases (read then), what
    # announcing runs failed instead did, and the flush waited for after the commit if any
    _Written = tuple[list[IngestResult], Leased, list[IngestResult], Flushed | None]

# whether a kind of transaction may wait for its flush after its commit (decided once a kind)
_FLUSHES_LATER: dict[type, bool] = {}


def _flush_later(tx: StoreTx) -> Flushed | None:
    """``tx.flush_later()`` if it can (``FlushesLater``), else None."""
    kind = type(tx)
    can = _FLUSHES_LATER.get(kind)
    if can is None:
        can = _FLUSHES_LATER[kind] = isinstance(tx, FlushesLater)
    return cast(FlushesLater, tx).flush_later() if can else None


@dataclass(slots=True)
class _Sender:
    items: list[EventIngest]
    retried: bool
    future: asyncio.Future[list[IngestResult]]


@dataclass(slots=True)
class _Group:
    senders: list[_Sender] = field(default_factory=list)
    now: float = float("-inf")
    # the senders whose own events the store refused (their index: the error), when the
    # group's verb was refused and each sender's events were ingested alone
    refused: dict[int, Exception] = field(default_factory=dict)


class IngestBatcher:
    """Gathers one event loop's ingestions into shared ingest verbs (see the module's doc)."""

    def __init__(self, engine: Engine) -> None:
        # (it holds no loop: the engine keeps one by its loop, which is collected once closed;
        # ``ingest`` is given it)
        self._engine = engine
        self._lock = threading.Lock()  # the pending group: filled in the loop, taken by the writer
        self._pending: _Group | None = None

    async def ingest(
        self, items: list[EventIngest], now: float, retried: bool, loop: asyncio.AbstractEventLoop
    ) -> list[IngestResult]:
        """Ingest ``items`` (planned at ``now``) with whatever else is pending, in ``loop``
        (this batcher's, running it); returns their results once committed."""
        future: asyncio.Future[list[IngestResult]] = loop.create_future()
        with self._lock:
            group = self._pending
            start = group is None
            if group is None:
                group = self._pending = _Group()
            group.senders.append(_Sender(items, retried, future))
            group.now = max(group.now, now)
        if start:
            self._start_job(loop)
        return await asyncio.shield(future)  # a caller that gives up leaves the group intact

    def _take(self) -> _Group | None:
        with self._lock:
            group, self._pending = self._pending, None
        return group

    def _start_job(self, loop: asyncio.AbstractEventLoop) -> None:
        engine = self._engine
        worker = engine.eager_worker_in(loop)
        lease_new = worker.lease_new_runs(engine.clock.now()) if worker is not None else None
        taken: list[_Group] = []

        def job(tx: StoreTx) -> _Written:
            if not taken:  # else applied again (writer.py): the same group
                group = self._take()
                if group is None:  # cannot happen: only this job takes the group it was made for
                    return [], list, [], None
                taken.append(group)
            group = taken[0]
            group.refused = {}  # (applied again: decided again)
            with collector_paused():  # the batch's records are no garbage: see _collector
                try:
                    results = self._ingest_group(tx, group)
                except Exception as exc:
                    if len(group.senders) < 2 or not self._refused(exc):
                        raise
                    results = self._each_alone(tx, group)
                leases: Leased = list
                announced: list[IngestResult] = []
                flushed: Flushed | None = None
                if lease_new is not None:
                    started = [run_id for r in results for run_id in r.run_ids]
                    leases, announced = lease_new(tx, started)
                    flushed = _flush_later(tx)
            return results, leases, announced, flushed

        delivered: list[bool] = []

        def committed(result: _Written) -> None:
            delivered.append(True)
            self._delivered(result, taken, worker)

        def ended(done: asyncio.Future[Any]) -> None:
            if not delivered:
                self._deliver(done, taken, worker)

        try:
            # alone: when the loop has nothing else ready, no sender can join the group before
            # a kick would run the job, so its commit begins now (writer.py), a loop turn
            # earlier; its results are delivered (the passes of the runs it leased started)
            # as the writer reads the commit's reply, not a loop turn after (``then``)
            write = engine.writer.submit(job, committed, alone=True, loop=loop)
        except Exception as exc:  # nothing was taken (the writer closed, or the job was not
            # queued): every sender is told, and _deliver hands the worker its count back
            failed: asyncio.Future[Any] = loop.create_future()
            failed.set_exception(exc)
            write = failed
        write.add_done_callback(ended)

    def _refused(self, error: Exception) -> bool:
        """Whether ``error`` (raised in the job) is the store refusing a value."""
        return isinstance(self._engine.store.store_error(error), StoreRefusedValue)

    def _each_alone(self, tx: StoreTx, group: _Group) -> list[IngestResult]:
        """The group's verb was refused for a value: each sender's events in a verb of their
        own (each verb is rolled back alone when it fails); the results of the senders whose
        events were ingested, in order, and ``group.refused`` names the others."""
        results: list[IngestResult] = []
        for at, sender in enumerate(group.senders):
            try:
                results += self._ingest_group(tx, _Group([sender], group.now))
            except Exception as exc:
                if not self._refused(exc):
                    raise
                found = self._engine.store.store_error(exc)
                assert found is not None
                group.refused[at] = found
        return results

    def _ingest_group(self, tx: StoreTx, group: _Group) -> list[IngestResult]:
        """One ingest verb for every sender's events; results in the senders' order."""
        engine, now = self._engine, group.now
        given = [i.event.internal_id for s in group.senders if s.retried for i in s.items]
        stored = tx.stored_event_ids(given) if given else set()
        ingested: list[EventIngest] = []
        repeated: set[int] = set()  # positions whose event is not ingested again
        position = 0
        for sender in group.senders:
            if not sender.retried:
                ingested += sender.items
                position += len(sender.items)
                continue
            for item in sender.items:
                internal_id = item.event.internal_id
                if internal_id in stored:
                    repeated.add(position)
                else:
                    stored.add(internal_id)  # a later retry in this group repeats it
                    ingested.append(item)
                position += 1
        results = tx.ingest(ingested, now, engine.wait_matches)
        if repeated:  # a retried event already stored: a duplicate's result in its place
            done = iter(results)
            results = [
                IngestResult(item.event.internal_id, True, (), ()) if p in repeated else next(done)
                for p, item in enumerate(i for s in group.senders for i in s.items)
            ]
        engine.announce_cancellations(tx, results, now, report=False)  # results unused
        return results

    def _deliver(
        self,
        done: asyncio.Future[_Written],
        taken: list[_Group],
        worker: EagerWorker | None,
    ) -> None:
        """In the loop, once the transaction committed (or failed): each sender's results."""
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is not None and worker is not None:
            worker.adopt(())  # nothing leased for it: it no longer waits for this write
            if isinstance(error, StoreUnavailable):  # it may have committed all the same
                worker.lost_a_lease()
        if not taken:  # the job never ran (the transaction failed before it, a closed writer)
            group = self._take()
            if group is None:
                return
            taken.append(group)
        senders = taken[0].senders
        if error is not None:
            for sender in senders:
                _fail(sender.future, error)
            return
        self._delivered(done.result(), taken, worker)

    def _delivered(self, result: _Written, taken: list[_Group], worker: EagerWorker | None) -> None:
        """In the loop, once the transaction committed: each sender's results; once it is on
        disk when its flush is waited for after its commit (``FlushesLater``: the passes of
        the runs it leased start now, the senders are told once it is flushed)."""
        results, leased, announced, flushed = result
        wait = flushed.wait if flushed is not None else None
        if wait is None:
            self._acknowledged(results, leased(), announced, taken, worker, False)
            return
        leases = leased()
        if worker is not None:
            worker.adopt(leases)
        wait.add_done_callback(
            lambda done: self._flushed(done, results, leases, announced, taken, worker)
        )

    def _flushed(
        self,
        done: asyncio.Future[None],
        results: list[IngestResult],
        leases: list[Lease],
        announced: list[IngestResult],
        taken: list[_Group],
        worker: EagerWorker | None,
    ) -> None:
        """In the loop, once a transaction committed without waiting for its flush waited
        for it: each sender's results, or the error saying its outcome is unknown (committed,
        perhaps not on disk; the leases taken are the worker's: their passes run). Either way
        what follows a commit is done (``Engine.after_ingest``: its rows are seen by every
        session already, and its passes run)."""
        error = done.exception() if not done.cancelled() else None
        if done.cancelled():
            error = StoreUnavailable("the send's flush to disk was not waited for: cancelled")
        self._acknowledged(results, leases, announced, taken, worker, True, error)

    def _acknowledged(
        self,
        results: list[IngestResult],
        leases: list[Lease],
        announced: list[IngestResult],
        taken: list[_Group],
        worker: EagerWorker | None,
        adopted: bool,
        error: BaseException | None = None,
    ) -> None:
        """In the loop, once the transaction is on disk: each sender's results (``adopted``:
        the worker started the leases' passes already), or ``error`` (committed, its flush
        unknown)."""
        senders = taken[0].senders
        try:
            self._engine.after_ingest(results, leases, worker, announced, adopted=adopted)
        finally:  # committed: every sender gets its results, whatever happens after
            at = 0
            refused = taken[0].refused
            for index, sender in enumerate(senders):
                if error is not None:  # (its flush unknown: every sender's outcome is)
                    _fail(sender.future, error)
                    continue
                if index in refused:  # its own events were refused: the others' are in
                    _fail(sender.future, refused[index])
                    continue
                mine = results[at : at + len(sender.items)]
                at += len(sender.items)
                if not sender.future.done():
                    sender.future.set_result(mine)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if future.done():
        return
    if isinstance(error, StoreError):  # one exception per waiting caller (as the writer does)
        copy = type(error)(error.reason, error.database)
        copy.__cause__ = error.__cause__ or error
        error = copy
    future.set_exception(error)
