"""The engine: registered functions, the store, the clock, and event ingestion.

One ``Engine`` per ``App`` per process. Workers (``engine.worker``) execute runs; everything that
writes goes through the ``BatchWriter`` so concurrent writers share transactions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol, TypeVar
from weakref import ref

from stepline._ids import new_id, new_ids
from stepline.clock import Clock
from stepline.engine._announce import (
    cancelled_events,
    make_owed,
    store_unheard_announcements,
)
from stepline.engine._clock_watch import ClockWatch
from stepline.engine._collector import collector_paused
from stepline.engine._handover import handed_over, listening
from stepline.engine._housekeeping import housekeeping
from stepline.engine._inbox import take_inbox
from stepline.engine._ingest_batch import IngestBatcher
from stepline.engine._system_events import (
    FUNCTION_CANCELLED,
    FUNCTION_FINISHED,
    ending_data,
    ending_names,
)
from stepline.engine._wake import WakeSignal
from stepline.engine.admission import admission_for, plan_run
from stepline.engine.changes import ChangeFeed, ingest_change
from stepline.engine.driver import PYTHON, Driver
from stepline.engine.metrics import EngineMetrics
from stepline.engine.writer import BatchWriter
from stepline.errors import ConfigError, StoreUnavailable
from stepline.expressions import stored_matches
from stepline.sdk.backoff import RetryBackoff
from stepline.sdk.event import Event, validate_event
from stepline.sdk.function import FunctionDef
from stepline.sdk.limits import Limits
from stepline.serde import dumps_exact
from stepline.store.capabilities import UnheardEvents, WakeupSource
from stepline.store.interface import Store, StoreTx
from stepline.store.records import (
    NO_ADMISSION,
    Deferral,
    EventIngest,
    EventRecord,
    FunctionSet,
    IngestResult,
    Lease,
    NewRun,
    TriggerRow,
    WaitRecord,
)

T = TypeVar("T")


class RunView(Protocol):
    """What a replay needs of the run it replays."""

    @property
    def app_id(self) -> str: ...

    @property
    def function_id(self) -> str: ...

    @property
    def event_ids(self) -> list[str]: ...


class EagerWorker(Protocol):
    """What ``Engine.send`` needs of a worker to hand it the runs an event starts."""

    def accepts_in(self, loop: asyncio.AbstractEventLoop) -> bool: ...

    def lease_new_runs(
        self, now: float
    ) -> Callable[
        [StoreTx, Sequence[str]], tuple[Callable[[], list[Lease]], list[IngestResult]]
    ]: ...

    def adopt(self, leases: Sequence[Lease]) -> None:
        """Start the passes of ``leases``: called once for each ``lease_new_runs``, once its
        write ended (with none if it failed)."""
        ...

    def lost_a_lease(self) -> None:
        """A write that may have leased runs for it failed (``StoreUnavailable``): it may
        have committed all the same (``Worker.lost_a_lease``)."""
        ...

    def wakes_with(self, event: asyncio.Event) -> bool: ...


class Engine:
    """Holds what every pass and every sender needs; owns the store's threads."""

    def __init__(
        self,
        app_id: str,
        store: Store,
        clock: Clock,
        limits: Limits,
        logger: logging.Logger,
    ) -> None:
        self.app_id = app_id
        self.store = store
        self.clock = clock
        self.limits = limits
        self.logger = logger
        self.functions: dict[str, FunctionDef] = {}
        self.drivers: dict[str, Driver] = {}  # besides the in-process one (engine/driver.py)
        self.served = FunctionSet(app_id, ())  # what this app's workers lease: its functions
        self._by_event: dict[str, list[FunctionDef]] = {}
        self.writer = BatchWriter(store)
        self.changes = ChangeFeed()  # committed changes, for the dashboard's live updates
        self._reader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stepline-reader")
        # the workers' own reads (when is the next run due): never queued behind the loads of
        # the runs their passes read on the readers (a due run waited for that queue)
        self._scheduler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepline-sched")
        self.step_threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="stepline-step")
        self.function_threads = ThreadPoolExecutor(
            max_workers=256, thread_name_prefix="stepline-fn"
        )
        self.step_mocks: dict[str, Callable[..., Any]] = {}
        self.retention: float | None = None  # seconds an ended run is kept (None: forever)
        self.backoff = RetryBackoff.INNGEST  # the wait before a failed step's next attempt
        self._eager_worker: EagerWorker | None = None
        self.metrics = EngineMetrics()
        self.next_purge = float("-inf")
        self.next_wait_purge = float("-inf")  # see _housekeeping.WAIT_PURGE_EVERY
        self.overdue_more = False  # housekeeping left runs past their start deadline
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._unwatch: Callable[[], None] | None = None  # stops the store's wake-ups
        self._wakers_lock = threading.Lock()  # also guards _batchers
        # each loop's batcher, by the loop's weak reference (a batcher holds no loop): a closed
        # loop is collected, and its entry is dropped with the next batcher made
        self._batchers: dict[ref[asyncio.AbstractEventLoop], IngestBatcher] = {}
        store.migrate()
        self.clock_watch = ClockWatch(self)  # this machine's clock against the database's
        listening(self)

    # -- registry ---------------------------------------------------------------------------------
    def add_driver(self, name: str, driver: Driver) -> None:
        """Drive the runs of functions whose ``driver`` is ``name`` with ``driver``."""
        if name == PYTHON or name in self.drivers:
            raise ConfigError(f"a driver named {name!r} is already added")
        self.drivers[name] = driver

    def register(self, fn: FunctionDef) -> None:
        """Add a function; its id must be unique in the app, its driver added."""
        if fn.id in self.functions:
            raise ConfigError(f"a function with id {fn.id!r} is already registered")
        if fn.driver != PYTHON and fn.driver not in self.drivers:
            raise ConfigError(
                f"function {fn.id!r} needs the driver {fn.driver!r}, which is not added "
                "(Engine.add_driver)"
            )
        self.functions[fn.id] = fn
        self.served = FunctionSet(self.app_id, tuple(self.functions))
        for trigger in fn.triggers:
            self._by_event.setdefault(trigger.name, []).append(fn)

    def unregister(self, function_id: str) -> None:
        """Remove a function (an SDK app re-synced without it): no new run of it starts and
        no worker leases its runs; its stored runs stay."""
        fn = self.functions.pop(function_id, None)
        if fn is None:
            return
        self.served = FunctionSet(self.app_id, tuple(self.functions))
        for trigger in fn.triggers:
            kept = [f for f in self._by_event.get(trigger.name, []) if f.id != function_id]
            if kept:
                self._by_event[trigger.name] = kept
            else:
                self._by_event.pop(trigger.name, None)

    # -- events -----------------------------------------------------------------------------------
    def invoke_target(self, function_id: str) -> FunctionDef | None:
        """The function an invoke names: by its id, or a native function by its Inngest id
        (``<app id>-<function id>``, how an SDK app's ``invoke`` names another app's function)."""
        fn = self.functions.get(function_id)
        if fn is None and function_id.startswith(f"{self.app_id}-"):
            native = self.functions.get(function_id.removeprefix(f"{self.app_id}-"))
            fn = native if native is not None and native.served_by is None else None
        return fn

    def event_record(self, event: Event, now: float, internal_id: str | None = None) -> EventRecord:
        """Validate an event at the edge and give it a Stepline id (``internal_id``, else a
        new one). Raises ``EventError``."""
        data_json = validate_event(event, self.limits.max_event_bytes)
        ts = event.ts / 1000 if event.ts else now
        return EventRecord(
            internal_id or new_id(now),
            event.name,
            dict(event.data),
            dict(event.user),
            event.id,
            ts,
            data_json,
            event.v or None,
        )

    def plan(self, record: EventRecord) -> EventIngest:
        """The runs an event starts here: every function of this app with a trigger it passes.
        The store hands the event to the other functions listening to its name (other apps',
        and this app's that this process does not have: ``EventIngest.sender``)."""
        candidates = self._by_event.get(record.name)
        if not candidates:
            return EventIngest(record, (), (), self.served)  # positional: cheaper
        return self.plan_for(record, candidates, self.served)

    def plan_for(
        self,
        record: EventRecord,
        candidates: Sequence[FunctionDef],
        sender: FunctionSet | None,
        now: float | None = None,
    ) -> EventIngest:
        """The runs and deferrals ``record`` starts among ``candidates`` (at ``now``, else the
        clock's now), for ``sender`` (``EventIngest.sender``)."""
        payload = record.payload()
        runs: list[NewRun] = []
        deferrals: list[Deferral] = []
        now = self.clock.now() if now is None else now
        at, not_before = (now, record.ts) if record.ts > now else (record.ts, None)
        for fn in candidates:
            if not any(t.name == record.name and t.matches(payload) for t in fn.triggers):
                continue
            planned = plan_run(fn, self.app_id, record.internal_id, payload, at, not_before)
            if isinstance(planned, NewRun):
                runs.append(planned)
            elif planned is not None:
                deferrals.append(planned)
        return EventIngest(record, tuple(runs), tuple(deferrals), sender)

    def trigger_rows(self) -> list[TriggerRow]:
        """This app's part of the trigger catalog: the event names its functions start runs
        on (``StoreTx.sync_triggers``, when a worker registers or an SDK app syncs)."""
        return [
            TriggerRow(self.app_id, fn.id, trigger.name)
            for fn in self.functions.values()
            for trigger in fn.triggers
        ]

    def take_inbox(self, tx: StoreTx, limit: int) -> Callable[[], list[IngestResult]]:
        """A part of a worker's lease job: take up to ``limit`` events other apps' senders
        handed to this app's functions and start their runs (``_inbox.take_inbox``)."""
        return take_inbox(self, tx, limit)

    @staticmethod
    def wait_matches(wait: WaitRecord, event: EventRecord) -> bool:
        """Whether an incoming event satisfies a stored wait's (substituted) expression."""
        if wait.expression is None:
            return True
        return stored_matches(wait.expression, event.payload())

    def _ingest_job(self, items: list[EventIngest], now: float) -> Callable[[StoreTx], Any]:
        def job(tx: StoreTx) -> list[IngestResult]:
            results = tx.ingest(items, now, self.wait_matches)
            self.announce_cancellations(tx, results, now, report=False)
            return results

        return job

    def ending_events(
        self,
        function_id: str,
        run_id: str,
        events: list[dict[str, Any]],
        status: str,
        now: float,
        **details: Any,
    ) -> list[EventIngest]:
        """The system events a run ending with ``status`` emits, given its trigger ``events``
        (their payloads; see ``_system_events``), planned as any event (one may start a run of
        the same function, as in Inngest; ``ending_names`` keeps that from looping). They carry
        the same data, encoded once."""
        names = ending_names(status, events)
        if not names:
            return []
        data = ending_data(function_id, run_id, events, status, **details)
        encoded = dumps_exact(data)
        return [
            self.plan(EventRecord(internal_id, name, data, {}, None, now, encoded))
            for internal_id, name in zip(new_ids(len(names), now), names, strict=True)
        ]

    def cancelled_events(
        self, tx: StoreTx, run_id: str, function_id: str, reason: str, now: float
    ) -> list[EventIngest]:
        """``inngest/function.finished`` and ``inngest/function.cancelled`` for a run just
        cancelled in ``tx`` (see ``_system_events``)."""
        return cancelled_events(self.plan, tx, [(run_id, function_id)], reason, now)

    def announce_cancellations(
        self,
        tx: StoreTx,
        results: Sequence[IngestResult],
        now: float,
        *,
        report: bool = True,
    ) -> list[IngestResult]:
        """Emit ``inngest/function.cancelled`` for the runs that ingestion cancelled (cancel_on,
        singleton), in the same transaction; cancellations they cause are announced too.
        Returns what ingesting those events did (``report`` False: nothing, for a caller that
        does not use it; the events nothing hears then make no result at all)."""
        announced: list[IngestResult] = []
        pending = [pair for r in results for pair in r.cancelled]
        while pending:
            more = self._announce(tx, pending, "cancelled by an event", now, report)
            if report:
                announced += more
            pending = [pair for r in more for pair in r.cancelled]
        return announced

    def _announce(
        self,
        tx: StoreTx,
        cancelled: Sequence[tuple[str, str]],
        reason: str,
        now: float,
        report: bool = True,
        cancelled_at: float | None = None,
    ) -> list[IngestResult]:
        """Ingest the ending events of runs cancelled in ``tx`` (``cancelled_events``): only
        stored when nothing hears them (``store_unheard_announcements``; no result made for
        them unless ``report``). Those an older version's sender owed (``announce_owed``) are
        made with ``cancelled_at``, when their runs were cancelled: stored with that time if
        nothing hears them, else ingested ``now``."""
        if not self._plans_endings() and isinstance(tx, UnheardEvents):
            at = now if cancelled_at is None else cancelled_at
            stored = store_unheard_announcements(tx, cancelled, reason, at, self.served, report)
            if stored is not None:
                return stored
        items = cancelled_events(self.plan, tx, cancelled, reason, now)
        return tx.ingest(items, now, self.wait_matches)

    def announce_owed(self, tx: StoreTx, now: float) -> tuple[list[IngestResult], bool]:
        """Make up to ``OWED_BATCH`` of the announcements an older version's senders owed
        (``make_owed``, SQLite schema 24), and those of the runs they cancel. Returns what
        ingesting them did (those only stored: when the change feed is watched), and whether a
        full batch was made (more may be owed)."""

        report = self.changes.watched  # else nothing reads the results of those only stored

        def announce(runs: list[tuple[str, str]], reason: str, at: float) -> list[IngestResult]:
            made = self._announce(tx, runs, reason, now, report, cancelled_at=at)
            return made + self.announce_cancellations(tx, made, now)

        with collector_paused():  # as an ingest job's (see _collector)
            return make_owed(tx, announce, self._owed_failed)

    def _owed_failed(self, error: Exception, runs: int) -> None:
        """Owed announcements that raised: the store being unavailable is raised (they stay
        owed); any other error is logged and they are dropped, as a failed run's are
        (``_announce.announce_failed``)."""
        if isinstance(self.store.store_error(error), StoreUnavailable):
            raise error
        self.logger.error("could not announce the end of %d cancelled runs: %r", runs, error)

    def _plans_endings(self) -> bool:
        """Whether a function of this app may start a run on a cancellation's events."""
        by_event = self._by_event
        return FUNCTION_FINISHED in by_event or FUNCTION_CANCELLED in by_event

    def cancel_job(self, run_id: str, reason: str, now: float) -> Callable[[StoreTx], bool]:
        """A write job that cancels one run and announces it."""

        def job(tx: StoreTx) -> bool:
            return self.cancel(tx, run_id, reason, now) is not None

        return job

    def cancel(
        self, tx: StoreTx, run_id: str, reason: str, now: float
    ) -> list[IngestResult] | None:
        """Cancel one run in ``tx`` and announce it; None if it had already ended. Returns what
        ingesting the announcements did."""
        with tx.savepoint():
            function_id = tx.cancel_run(run_id, now, reason)
            if function_id is None:
                return None
            results = self._announce(tx, [(run_id, function_id)], reason, now)
            return results + self.announce_cancellations(tx, results, now)

    async def send(self, events: Sequence[Event]) -> list[str]:
        """Ingest events durably (one transaction); returns their ids once committed.

        When a worker of this engine runs in this event loop with free slots, the runs the
        events start are leased to it in the same transaction and their passes begin at once
        (one commit instead of two before the first step)."""
        return [r.internal_id for r in await self.ingest_events(events)]

    async def ingest_events(self, events: Sequence[Event]) -> list[IngestResult]:
        """``send``, returning what each event did (runs started, waits resumed, runs
        cancelled, runs skipped by flow control)."""
        now = self.clock.now()
        return await self.ingest_records(self._event_records(events, now), now)

    def _event_records(self, events: Sequence[Event], now: float) -> list[EventRecord]:
        """``event_record`` of each event, their ids made together (one lock for them all)."""
        ids = new_ids(len(events), now)
        return [self.event_record(e, now, i) for e, i in zip(events, ids, strict=True)]

    async def ingest_records(
        self, records: Sequence[EventRecord], now: float, *, retried: bool = False
    ) -> list[IngestResult]:
        """Ingest events already validated and given their ids by ``event_record`` (at
        ``now``). ``retried``: their ids were given by the sender (e.g. derived from a
        request's seed), so an event whose id is already stored is a retry of the same request
        and is not ingested again (its result says duplicate)."""
        watch = self.clock_watch  # (no coroutine a send while its judgement is fresh)
        if watch.due():
            await watch.refuse_sends_async()  # ClockSkewError while beyond the bound
        items = [self.plan(record) for record in records]
        loop = asyncio.get_running_loop()
        return await self._batcher(loop).ingest(items, now, retried, loop)

    def _batcher(self, loop: asyncio.AbstractEventLoop) -> IngestBatcher:
        """``loop``'s ``IngestBatcher`` (concurrent senders share ingest verbs)."""
        try:  # (``ref(loop)`` is the key itself: a loop's plain weak reference is one object)
            return self._batchers[ref(loop)]
        except KeyError:
            pass
        with self._wakers_lock:
            batchers = self._batchers
            for gone in [key for key in batchers if (other := key()) is None or other.is_closed()]:
                del batchers[gone]
            batcher = batchers[ref(loop)] = IngestBatcher(self)
        return batcher

    def eager_worker_in(self, loop: asyncio.AbstractEventLoop) -> EagerWorker | None:
        """The in-process worker that ``send`` in ``loop`` hands the runs it starts, if any."""
        worker = self._eager_worker
        return worker if worker is not None and worker.accepts_in(loop) else None

    def after_ingest(
        self,
        results: list[IngestResult],
        leases: Sequence[Lease],
        worker: EagerWorker | None,
        announced: Sequence[IngestResult] = (),
        *,
        adopted: bool = False,
    ) -> None:
        """Once an ingestion committed: count the events, start the passes of the runs leased
        to ``worker`` in its transaction, wake the workers that may have work, tell the live
        views. ``announced``: what the announcements of runs failed instead of leased did.
        The runs are handed over first: whatever raises after it, none is left leased without
        a pass until its lease expires, and the worker no longer counts the write as work in
        flight (a virtual clock would never jump again). ``adopted``: the worker started
        them already (at the commit, before the flush this waited for: ``FlushesLater``)."""
        if worker is not None and not adopted:
            worker.adopt(leases)
        self.metrics.accept_events(len(results))
        handed_over(results)
        if worker is None:
            self.wake_workers()
        else:
            # the worker that got every run the events started has nothing new to look for: a
            # lease attempt now would only compete with those runs' passes for the writer
            started = {run_id for r in results for run_id in r.run_ids}
            handed_all = (
                started == {lease.run_id for lease in leases}
                and not announced
                and not any(r.resumed_run_ids or r.cancelled for r in results)
            )
            self.wake_workers(but=worker if handed_all else None)
        if self.changes.watched:  # else building the change is a cost of every event
            self.changes.publish(ingest_change([*results, *announced]))

    def offer_runs_to(self, worker: EagerWorker) -> None:
        """Let ``send`` hand the runs it starts to this in-process worker (the first one)."""
        if self._eager_worker is None:
            self._eager_worker = worker

    def stop_offering_to(self, worker: EagerWorker) -> None:
        """Undo ``offer_runs_to`` (the worker is stopping)."""
        if self._eager_worker is worker:
            self._eager_worker = None

    def send_sync(self, events: Sequence[Event]) -> list[str]:
        """``send`` for code with no running event loop (or outside it)."""
        watch = self.clock_watch
        if watch.due():
            watch.refuse_sends()  # ClockSkewError while beyond the bound
        now = self.clock.now()
        items = [self.plan(record) for record in self._event_records(events, now)]
        results: list[IngestResult] = self.writer.submit_sync(self._ingest_job(items, now))
        self.after_ingest(results, (), None)
        return [r.internal_id for r in results]

    def replay_of(self, original: RunView, now: float) -> NewRun:
        """The run that replays ``original`` (of the same app and function): the function's
        concurrency, cancel_on and timeouts apply to it (computed from its first event, when
        this app has the function); the admission gates that would skip it (idempotency, rate
        limit, singleton) do not; it is due at once."""
        admission = NO_ADMISSION
        function_id, event_ids = original.function_id, original.event_ids
        fn = self.functions.get(function_id) if original.app_id in (self.app_id, "") else None
        events = self.store.get_events(event_ids[:1])
        if fn is not None and events:
            full = admission_for(fn, self.app_id, events[0].payload())
            admission = replace(full, idempotency_key=None, rate_limit=None, singleton_key=None)
        app_id = original.app_id or (self.app_id if fn is not None else "")
        return NewRun(
            new_id(now), function_id, tuple(event_ids), admission=admission, app_id=app_id
        )

    # -- schedules and deferred runs -----------------------------------------------------------
    def housekeeping(self, tx: StoreTx, now: float) -> list[IngestResult]:
        """Start what became due without a run to lease yet, cancel the runs not started by
        their start deadline, purge (``_housekeeping.housekeeping``). Returns what it
        ingested, for the change feed."""
        return housekeeping(self, tx, now)

    # -- reads and wake-ups -----------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any, scheduling: bool = False) -> T:
        """Run a store read on a reader thread (``scheduling``: a worker's read of when work
        is due next, on a thread of its own). Raises ``StoreUnavailable`` when the store
        cannot be read for now, ``StoreError`` when it cannot be read at all (never the
        backend's raw exception)."""
        executor = self._scheduler if scheduling else self._reader
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except Exception as exc:
            failed = self.store.store_error(exc)
            if failed is None or failed is exc:
                raise
            raise failed from exc

    def read_later(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn`` (a store read that never raises) on a reader thread, not waited for;
        nothing once the engine closed (False)."""
        try:
            self._reader.submit(fn, *args)
        except RuntimeError:  # the reader shut down: the engine closed
            return False
        return True

    def add_waker(self, event: asyncio.Event) -> None:
        """Register a worker's wake-up signal (set when work may have become due)."""
        with self._wakers_lock:
            self._wakers.append((asyncio.get_running_loop(), event))
            # other processes' commits wake this process's workers (PostgreSQL: LISTEN/NOTIFY);
            # watched again from each waker's loop: this one reads them if the loop they were
            # read in stopped
            if isinstance(self.store, WakeupSource):
                unwatch = self.store.watch(self._notified)
                if self._unwatch is None:
                    self._unwatch = unwatch

    def remove_waker(self, event: asyncio.Event) -> None:
        """Unregister a worker's wake-up signal."""
        with self._wakers_lock:
            self._wakers = [(lp, ev) for lp, ev in self._wakers if ev is not event]

    def wake_workers(self, but: EagerWorker | None = None) -> None:
        """Tell this process's workers (``but`` one) that work may be due now."""
        self._wake(but, ())

    def _notified(self, named: Sequence[tuple[str, str]]) -> None:
        """The store's wake-up (another thread): work may be due, or only the ``named`` new
        runs (function id, run id), which a worker may lease by name (``WakeSignal``)."""
        self._wake(None, named)

    def _wake(self, but: EagerWorker | None, named: Sequence[tuple[str, str]]) -> None:
        with self._wakers_lock:
            wakers = list(self._wakers)
        if but is not None:
            wakers = [(loop, event) for loop, event in wakers if not but.wakes_with(event)]
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, event in wakers:
            if named and isinstance(event, WakeSignal):
                wake: Callable[[], None] = functools.partial(event.name, named)
            else:
                wake = event.set
            if loop is current:
                wake()
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(wake)
                except RuntimeError:  # closed since the check (another thread): none to wake
                    pass

    def close(self) -> None:
        """Stop threads and close the store."""
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        self.writer.close()
        self._reader.shutdown(wait=True)
        self._scheduler.shutdown(wait=True)
        self.step_threads.shutdown(wait=False)
        self.function_threads.shutdown(wait=False)
        self.store.close()
