"""The worker loop: lease due runs, execute their passes, heartbeat the leases.

A worker registers itself (its app and functions) and leases only runs of those functions: a run
of a function it does not have (another app's, or a newer deploy's) waits for a worker that has
it, and is never failed for that. A worker leases up to ``concurrency`` runs at a time. Leases
last ``lease_ttl`` seconds and are extended every third of that while the pass is alive (and the
worker's registration with them); a worker that dies stops heartbeating, its
leases expire, and any worker re-leases those runs, which replay from their last commit. A worker
restarted with the same ``worker_id`` reclaims its predecessor's leases at once.

A worker running in the same event loop as ``App.send_async`` is also handed the runs an event
starts, leased inside the event's own transaction (one commit before the first step instead of
two). On PostgreSQL, a worker with a free slot is also handed the new runs another process
sends, leased to it in that process's transaction (``_named_runs.py``, ``handoffs=False``: none).
Its ``concurrency`` is a bound on passes it leases per attempt; a handed-over batch and a
lease attempt made at the same moment can briefly take it past that bound. A worker serving
several functions keeps its last slot for a function with no pass running in it
(``_spare_slot.py``): one function's backlog uses ``concurrency - 1`` slots, and a new run of
another starts at once.

A store that is unavailable for a while (``StoreUnavailable``: disk full, I/O errors, locked past
the busy timeout, a dropped connection) never ends a worker: it logs the outage once, backs off
(0.1 s doubling to 5 s, real time) and tries again until the store recovers, then logs that. A
pass whose read or commit failed ends there (its uncommitted step results are lost, never
acknowledged); its run is leased again at the first lease attempt that succeeds and replays from
its last commit.

A store that fails for good (``StoreError``: the database is read-only, corrupt, cannot be
opened) stops the worker: it logs the error once, lets the passes in flight end (their commits
fail the same way, nothing is acknowledged) and ``run()`` raises that ``StoreError``; the
``stepline worker`` command prints it on one line and exits 1. Backing off would hide a database
someone must fix behind a worker that looks alive.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from stepline._ids import new_id
from stepline._text import MAX_ID_CHARS, clipped, name_problem
from stepline.clock import SystemClock
from stepline.engine._announce import announce_failed
from stepline.engine._clock_watch import held_at_start, held_by_clock
from stepline.engine._housekeeping import cron_rows, start_timed
from stepline.engine._minority_first import Ahead, minority_first
from stepline.engine._named_runs import NamedRuns
from stepline.engine._new_runs import LeaseJob, lease_job, loaded
from stepline.engine._outage import StoreOutage
from stepline.engine._spare_slot import attempt, fitting, room
from stepline.engine._wake import WakeSignal
from stepline.engine._worker_passes import WorkerPasses
from stepline.engine.changes import ingest_change
from stepline.engine.engine import Engine
from stepline.errors import (
    ConfigError,
    StoreError,
    StoreUnavailable,
)
from stepline.store.capabilities import WakeupSource
from stepline.store.interface import StoreTx
from stepline.store.records import (
    MAX_PASSES_WITHOUT_PROGRESS,
    FunctionSet,
    IngestResult,
    Lease,
    SpentRun,
    WorkerRecord,
)

log = logging.getLogger("stepline.worker")
T = TypeVar("T")

# Runs due within this many seconds are leased ahead of time (real clock): the lease
# transaction, which waits behind the group commit in flight, and the run's load happen before
# the due time instead of after it, and the pass starts on time. Only while fewer than half of
# the worker's slots are busy: a pass waiting for its due time holds a slot.
LEASE_AHEAD = 0.05
# inbox rows (events handed to this app's functions by other apps' senders) one lease job takes
INBOX_BATCH = 256
LATE_MARGIN = 0.001  # a start deadline's run is cancelled this long after it (late: after it)


def default_worker_id() -> str:
    """``STEPLINE_WORKER_ID``, else a fresh id for this process."""
    return os.environ.get("STEPLINE_WORKER_ID") or f"{socket.gethostname()}-{new_id()[-10:]}"


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def _announce_takeovers(leases: Sequence[Lease], worker_id: str) -> None:
    """Log the runs taken over from other workers whose leases expired (they crashed or hung);
    this worker's own expired leases (passes an outage cut short) are not news."""
    taken = Counter(
        lease.taken_over_from
        for lease in leases
        if lease.taken_over_from and lease.taken_over_from != worker_id
    )
    for owner, n in taken.items():
        log.warning("resuming %s of worker %s (it stopped or its lease expired)", _runs(n), owner)


class Worker(WorkerPasses):
    """Executes runs from the store until stopped."""

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = 100,
        worker_id: str | None = None,
        lease_ttl: float = 10.0,
        poll_interval: float | None = 0.25,
        lease_ahead: float | None = None,
        handoffs: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.engine = engine
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        problem = name_problem(self.worker_id, MAX_ID_CHARS)
        if problem is not None:  # stored as text, in index entries (the same on every store)
            raise ConfigError(f"worker id {clipped(self.worker_id)!r} {problem}")
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        # seconds before their due time that runs are leased (their pass loads them and
        # executes at the due time): wall time only, a virtual clock jumps to the instant
        if lease_ahead is None:
            lease_ahead = LEASE_AHEAD if isinstance(engine.clock, SystemClock) else 0.0
        self.lease_ahead = lease_ahead
        self.active: dict[str, asyncio.Task[None]] = {}
        self._function_of: dict[str, str | None] = {}  # the function of each active pass's run
        self._starts: dict[str, Ahead] = {}  # passes started in their attempt's order
        self.passes = 0
        self._wake = WakeSignal()
        # whether the last lease attempt filled every free slot (more may be due): runs named
        # by a wake-up are then left to the next attempt, which leases in the fair order
        self._backlogged = True
        self._next_due: float | None = None  # as the last read of it said (_idle)
        # sends whose write leases runs for this worker, their runs not handed over yet
        # (``adopt``): work in flight for a virtual clock, as a pass is (``_at_rest``)
        self._handovers = 0
        self._stopping = asyncio.Event()
        self._leased_at = float("-inf")  # the time of the last lease attempt
        self.ready = asyncio.Event()  # set once the worker has registered (crons, old leases)
        # set once its first attempt to register ended (registered, or the store failed)
        self.tried = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context = contextvars.copy_context()  # run()'s, once it runs
        self.loops = 0  # lease attempts made (tests wait on it to know the worker looked)
        self.heartbeats = 0  # heartbeat commits made (tests wait on it instead of on time)
        self.leased_by_name = 0  # runs leased by name (named by a wake-up: NamedLeases)
        # called with what each wake-up said (any due work?, the runs it named: run id ->
        # function id) as the lease attempt it starts begins (tests, diagnostics)
        self.on_wake: Callable[[bool, Mapping[str, str]], None] | None = None
        self.outage = StoreOutage(self.worker_id)
        self.failed: StoreError | None = None  # the store error that stopped this worker
        # runs leased to it without a pass (one ended on StoreUnavailable, a hand-off beyond
        # its free slots): their leases expire at its next lease attempt, to be leased again
        self._cut_short: set[str] = set()
        # a lease write of its own failed (StoreUnavailable): it may have committed leases this
        # worker never heard of, given back by its next lease attempt made with no pass here
        self._unheard = False
        # when it last gave them back (its clock): hand-offs read within half a TTL after it
        # may be leases that give-back released (and leased again), never started as handed
        self.reclaimed_at: float | None = None
        # runs leased again while their previous pass here is still ending: started after it
        self._next_pass: dict[str, Lease] = {}
        # its clock was beyond the database's bound when it last looked: its offer of hand-offs
        # is withdrawn (``_clock_watch.held_by_clock``), or, not registered yet, it waits to
        # register (``held_at_start``: no offer made yet)
        self.clock_held = False
        # passes begun on a run without a commit of its own before lease_due fails it
        self.max_passes = MAX_PASSES_WITHOUT_PROGRESS
        self.handed = 0  # runs handed to it by their senders with their leases (HandedLeases)
        # its runs named by wake-ups: claimed, leased by name, handed to it (_named_runs.py)
        # hand-offs with the system's clock only: a lease handed by another engine is in flight
        # until its notification is read, which a virtual clock would jump past (and expire it)
        real = isinstance(engine.clock, SystemClock)
        self._named = NamedRuns(self, engine.store, handoffs and real)
        if self._named.alone is not None:
            self._wake.claim = self._named.claim
        # what a pass's end wakes it for (``_pass_end_looks``): whether every commit that makes
        # work due wakes it (PostgreSQL's NOTIFY, its own passes' commits heard too; with the
        # system's clock only: a virtual one jumps once the worker is at rest, which a pass's
        # end made it look at again), whether it owes a look (a wake-up's work it left: runs
        # named that no slot could take, a lease attempt for its spare slot alone), and
        # whether its last wait counted on a pass's end
        self._hears_work = real and isinstance(engine.store, WakeupSource)
        self._owed = True
        self._awaits_pass_end = True

    def wake(self) -> None:
        """Look for due work now."""
        self._wake.set()

    async def run(self) -> None:
        """Serve until ``stop()``; then finish the passes in flight."""
        engine = self.engine
        engine.add_waker(self._wake)
        self._loop = asyncio.get_running_loop()
        # each pass runs in a copy of this context, wherever it is started (a claim starts
        # passes in the callback that read its lease's reply, outside this task)
        self._context = contextvars.copy_context()
        engine.offer_runs_to(self)
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            while not self._stopping.is_set():
                try:
                    await self._serve_once()
                except StoreUnavailable as exc:
                    self.tried.set()
                    self.outage.failed(exc)
                    await self._back_off()
                except StoreError as exc:
                    self.tried.set()
                    self._fail(exc)
        finally:
            await self._named.withdraw()
            engine.remove_waker(self._wake)
            engine.stop_offering_to(self)
            # passes in flight finish first, their leases still heartbeated: a long step during
            # a graceful stop must not be taken over (and run again) by another worker
            # a pass that ends may start its run's next one (_next_pass), a claim its passes
            while self.active or self._named.claims:
                running = (*self.active.values(), *self._named.claims)
                await asyncio.gather(*running, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            if self.ready.is_set() and self.failed is None:
                await self._unregister()
            self._named.refuse()
        if self.failed is not None:
            raise self.failed

    def _fail(self, error: StoreError) -> None:
        """The store failed for good: log it once and stop (``run()`` raises it)."""
        if self.failed is None:
            self.failed = error
            log.error("worker %s: %s; stopping", self.worker_id, error)
        self.stop()

    async def _unregister(self) -> None:
        """Leave the registry (a crashed worker's entry expires by itself)."""
        try:
            await self.engine.writer.write(lambda tx: tx.unregister_worker(self.worker_id))
        except Exception:
            log.warning("worker %s: could not unregister", self.worker_id, exc_info=True)

    async def _serve_once(self) -> None:
        """Register (the first time), lease due runs and start their passes, then wait for
        more work unless every free slot was filled."""
        engine = self.engine
        if not self.ready.is_set():
            if await held_at_start(self):  # its registration would write this clock's times
                self.tried.set()  # (its first attempt ended: refused, as in an outage)
                self.loops += 1
                return
            self._named.accept()  # before its row says it takes them
            reclaimed = await engine.writer.write(self._start_job(engine.clock.now()))
            if reclaimed:  # a previous process with this id stopped without releasing them
                log.warning("resuming %s of worker %s", _runs(reclaimed), self.worker_id)
            self.ready.set()
            self.tried.set()
        plain, named = self._wake.take()
        if self.on_wake is not None:
            self.on_wake(plain, named)
        if await held_by_clock(self):  # this machine's clock is beyond the bound: no lease
            self._owed = self._owed or plain or bool(named)
            self.loops += 1
            return
        free = self.concurrency - len(self.active) - self._named.claimed
        leases: list[Lease] = []
        if free > 0 and named and not plain and not self._backlogged:
            # woken only for new runs another process made due: those of this worker's
            # functions are leased by name (one round trip), and if that took them all there
            # is nothing else to look for. What else is due is what the last read of the next
            # due time said: anything due since then came with a plain wake-up, and a lease
            # only moves its runs' due time away (no read racing the passes just started)
            served = engine.served.function_ids
            room, spare = self._room(free)
            runs = [(run_id, fn) for run_id, fn in named.items() if fn in served]
            mine = fitting(room, runs, self._here()) if spare else [r for r, _ in runs][:room]
            if mine:
                leases = await self._reserving(len(mine), self._named.lease(mine, named))
                free -= len(leases)
            if len(leases) == len(mine):
                # runs named that no slot could take (the spare kept) are due: owed a look
                self._owed = self._owed or len(mine) < len(runs)
                self.loops += 1
                await self._idle(read=False)
                return
            # counted again: a run handed to this worker meanwhile may have taken a slot
            free = self.concurrency - len(self.active) - self._named.claimed
        attempt = self._attempt(free)
        if attempt is None and self._cut_short:
            await self._give_back_now()
        if attempt is not None:
            limit, functions = attempt
            now = self._leased_at = engine.clock.now()
            # (never a run with a pass here: leased again meanwhile, its lease is its pass's)
            cut_short = [run_id for run_id in self._cut_short if run_id not in self.active]
            # every lease of its own given back first: none has a pass here, and none can get
            # one during the attempt (it reserves every slot)
            reclaim = (
                self._unheard
                and not self.active
                and not self._named.claimed
                and not self._handovers  # an in-process send's lease in flight
            )
            job = self._lease_job(now, limit, cut_short, reclaim, functions)
            # unordered: a pass's commit submitted meanwhile is made on the loop beside it
            # (both are fenced by the leases, as another process's writes would be)
            leased, housekept, inboxed = await self._reserving(
                limit, engine.writer.write(job, unordered=True)
            )
            if reclaim:  # from its end on (the release committed): the window of hand-offs
                self._unheard = False
                self.reclaimed_at = engine.clock.now()
            # (an attempt for the spare slot alone read only the functions with no pass here)
            self._owed = functions is not engine.served
            partial = functions is not engine.served and self._backlogged
            self._backlogged = len(leased) == limit or inboxed or partial
            free -= len(leased)
            leases += leased
            if inboxed:  # runs of handed-over events started (or more runs to cancel): now
                self._wake.set()
            self._cut_short.difference_update(cut_short)
            self.outage.recovered()
            _announce_takeovers(leased, self.worker_id)
            if housekept:
                engine.changes.publish(ingest_change(housekept))
            engine.changes.publish_runs([lease.run_id for lease in leased])
            for lease in minority_first(leased, self._starts):
                self._start_pass(lease)
        self.loops += 1
        if leases and not free:
            self._awaits_pass_end = True  # (a slot frees only as a pass ends)
            await asyncio.sleep(0)
            return
        await self._idle()

    async def _give_back_now(self) -> None:
        """Expire the leases of the runs given back (``give_back``) that no lease attempt will
        expire now: with only its spare slot free and a pass here of every function it serves,
        the worker makes none (``_spare_slot.attempt``), and a run handed to it there (its
        function has a pass here: not for the spare) stayed leased to it, with no pass, until
        one of its passes ended or the lease expired; expired, it is due for any worker."""
        cut_short = [run_id for run_id in self._cut_short if run_id not in self.active]
        if cut_short:
            owner, now = self.worker_id, self.engine.clock.now()
            await self.engine.writer.write(lambda tx: tx.heartbeat(owner, cut_short, now, 0.0))
        self._cut_short.difference_update(cut_short)

    def _here(self) -> set[str | None]:
        """The functions with a pass running in this worker."""
        function_of = self._function_of
        return {function_of.get(run_id) for run_id in self.active}

    def _room(self, free: int) -> tuple[int, bool]:
        """``_spare_slot.room`` of this worker."""
        return room(self.concurrency, self.engine.served, self._handovers, free)

    def _attempt(self, free: int) -> tuple[int, FunctionSet] | None:
        """``_spare_slot.attempt`` of this worker."""
        return attempt(self.concurrency, self.engine.served, self._handovers, free, self._here)

    async def _reserving(self, slots: int, attempt: Awaitable[T]) -> T:
        """``attempt`` (a lease of up to ``slots`` runs), those slots reserved meanwhile: a run
        handed to this worker then is given back (``give_back``) instead of taking one the
        attempt may fill (which took the worker past its concurrency). The caller starts the
        attempt's passes."""
        self._named.claimed += slots
        try:
            return await attempt
        except StoreUnavailable:
            self.lost_a_lease()
            raise
        finally:
            self._named.claimed -= slots

    async def _back_off(self) -> None:
        """Wait before trying the store again (real time: an outage is not virtual); a stop
        ends the wait."""
        try:
            await asyncio.wait_for(self._stopping.wait(), self.outage.delay())
        except TimeoutError:
            pass

    async def _idle(self, *, read: bool = True) -> None:
        """Wait until work may be due (``read=False``: as the last read of the next due time
        said)."""
        engine = self.engine
        if read:
            self._next_due = await engine.read(
                engine.store.next_due_at, engine.served, scheduling=True
            )
        next_due = self._next_due
        now = engine.clock.now()
        # a run may be leased lease_ahead before it is due (crons, deferrals and expired
        # leases only when due: the lease attempt made ahead did not take those)
        deadline = None if next_due is None else next_due - self.lease_ahead
        full = self._attempt(self.concurrency - len(self.active)) is None
        self._awaits_pass_end = full
        if full:
            # no free slot (or only the spare, for none of the functions due): only a finished
            # pass (or stop) can change that
            deadline = None
        elif deadline is not None and deadline > self._leased_at and deadline <= now:
            return  # it became due after the lease attempt (the clock moved): lease again
        elif next_due is not None and deadline is not None and deadline <= now < next_due:
            deadline = next_due
        elif deadline is not None and deadline <= now:
            # due but not leasable (a concurrency key is full): wait for a pass to end, or for
            # the next start deadline of a run held back (housekeeping cancels it then)
            self._awaits_pass_end = True
            start = None
            if start_timed(engine):
                earliest = await engine.read(engine.store.next_start_deadline, engine.served)
                # a run is late only after its deadline (at it, it may still start)
                start = None if earliest is None else earliest + LATE_MARGIN
            if start is not None and self._leased_at < start <= now:
                return  # it passed after the lease attempt: lease again (and cancel the run)
            if start is not None and start <= self._leased_at:
                start = None  # the lease attempt's housekeeping saw it
            deadline = now + (self.poll_interval or 0.05) if not self.active else None
            if start is not None:
                deadline = start if deadline is None else min(deadline, start)
        if self.poll_interval is not None:
            # the poll counts from the lease attempt (when there was one: a slot was free), so a
            # clock that moved since then is never slept through
            since = now if full else self._leased_at
            cap = since + self.poll_interval
            deadline = cap if deadline is None else min(deadline, cap)
        if self._stopping.is_set():
            return
        # idle as long as no pass runs and no send's write leases runs for it: one ``send``
        # hands over starts without waking this wait
        self._named.sleeping = True
        try:
            await engine.clock.sleep_until(deadline, self._wake, idle=self._at_rest)
        finally:
            self._named.sleeping = False

    def _pass_end_looks(self) -> bool:
        """Whether the end of a pass (one that ran its course: ``WorkerPasses._pass``) wakes
        this worker to look for due work. Not when no look could find any it has not looked
        for: every commit that makes work due wakes it (``_hears_work``: the pass's own commits
        too, a run's end that freed a concurrency slot included), its last lease attempt was
        for every function it serves and left nothing behind for want of a slot
        (``_backlogged``), no wake-up since left work it did not look for (``_owed``: runs
        named that no slot could take, its spare kept; an attempt for the spare alone), and its
        last wait did not count on a pass's end (no free slot, or a run due that no slot could
        take: its concurrency key full). A run another process sends, started from its
        notification, then costs no lease attempt and no read of the next due time after its
        end (PostgreSQL: ~1.3 ms of the worker's CPU of ~3.4 per event, one write and one read
        of the server's)."""
        return not self._hears_work or self._backlogged or self._owed or self._awaits_pass_end

    def _at_rest(self) -> bool:
        """Whether nothing this worker does depends on the clock standing still: no pass in
        flight, no lease of named runs claimed, and no run leased for it by a ``send`` whose
        write is not handed over yet (its lease's expiry counts from the time the write
        began)."""
        named = self._named
        return not self.active and not named.claims and not self._handovers

    def _lease_job(
        self,
        now: float,
        limit: int,
        cut_short: list[str],
        reclaim: bool = False,
        functions: FunctionSet | None = None,
    ) -> Callable[[StoreTx], tuple[list[Lease], list[IngestResult], bool]]:
        """The lease job: housekeeping, heartbeats, the lease, and the runs of events handed
        to this app's functions by other apps' senders (their runs are leased by the next
        lease attempt: the job's third value says one is due now, or that housekeeping left
        runs past their start deadline to cancel). ``reclaim`` (no pass here): every run
        leased to this worker is made due first (``lost_a_lease``). ``functions``: those whose
        runs it leases (default: every function served)."""
        running = list(self.active)
        purge: list[float] = []  # when the next purges were due as this job was first applied

        def job(tx: StoreTx) -> tuple[list[Lease], list[IngestResult], bool]:
            engine = self.engine
            if purge:  # applied again (writer.py): the purges are decided again as they were
                engine.next_purge, engine.next_wait_purge = purge
            purge[:] = [engine.next_purge, engine.next_wait_purge]
            housekept = engine.housekeeping(tx, now)
            if reclaim:
                reclaimed = tx.release_owner(self.worker_id, now)
                if reclaimed:
                    log.info("worker %s: gives back %s", self.worker_id, _runs(reclaimed))
            if running:  # never find our own passes' leases expired (and lease them again)
                tx.heartbeat(self.worker_id, running, now, self.lease_ttl)
            if cut_short:  # passes an outage ended: their leases expire now, to be leased again
                tx.heartbeat(self.worker_id, cut_short, now, 0.0)
            served, max_passes = functions or self.engine.served, self.max_passes
            # ahead only with slots to spare: a busy worker's slots go to runs due now
            due_by = now + (self.lease_ahead if len(running) < self.concurrency // 2 else 0.0)
            failed: list[SpentRun] = []
            # all or nothing: rows taken from the inbox are never lost to a failure after it
            with tx.savepoint():
                # events other apps' senders handed to this app's functions: taken here (on
                # PostgreSQL sent with the lease's round trip), their runs started after it
                handed = engine.take_inbox(tx, INBOX_BATCH)
                leases = tx.lease_due(
                    self.worker_id, now, limit, self.lease_ttl, served, max_passes, due_by, failed
                )
                leases = loaded(tx, leases)  # read here, not again by each pass (SQLite)
                if failed:
                    housekept += announce_failed(self.engine, tx, failed, now, max_passes)
                started = handed()
            return leases, housekept + started, bool(started) or engine.overdue_more

        return job

    def _start_job(self, now: float) -> Callable[[StoreTx], int]:
        served = self.engine.served
        me = WorkerRecord(
            self.worker_id, served.app_id, served.function_ids, now, now, now + self.lease_ttl
        )

        def job(tx: StoreTx) -> int:
            tx.register_worker(me)
            self._named.offer(tx)
            reclaimed = tx.release_owner(self.worker_id, now)
            tx.sync_crons(served, cron_rows(self.engine, now))
            tx.sync_triggers(served.app_id, self.engine.trigger_rows(), now, served)
            return reclaimed

        return job

    def _heartbeat_job(self, run_ids: list[str], now: float) -> Callable[[StoreTx], list[str]]:
        def job(tx: StoreTx) -> list[str]:
            tx.touch_worker(self.worker_id, now, now + self.lease_ttl)
            if not run_ids:
                return []
            return tx.heartbeat(self.worker_id, run_ids, now, self.lease_ttl)

        return job

    # -- runs handed over by Engine.send (leased in the event's own transaction) ----------------
    def accepts_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``send`` in ``loop`` may lease new runs to this worker."""
        return self.ready.is_set() and not self._stopping.is_set() and loop is self._loop

    def lease_new_runs(self, now: float) -> LeaseJob:
        """A part of a write job: lease the runs ``started`` (the event just created them),
        or as many due runs, within this worker's free slots (``_new_runs.lease_job``). Each
        call is answered by one ``adopt`` (with no leases if the write failed)."""
        running = list(self.active)
        room, spare = self._room(self.concurrency - len(running) - self._named.claimed)
        here = self._here() if spare else None  # its last slot: the spare (_spare_slot)
        self._handovers += 1
        ttl, max_passes = self.lease_ttl, self.max_passes
        return lease_job(self.engine, self.worker_id, running, room, now, ttl, max_passes, here)

    def wakes_with(self, event: asyncio.Event) -> bool:
        """Whether ``event`` is this worker's wake-up signal."""
        return event is self._wake

    def adopt(self, leases: Sequence[Lease]) -> None:
        """Start the passes of runs leased to this worker by ``send`` (the write of one
        ``lease_new_runs`` ended: none if it failed)."""
        self._handovers = max(0, self._handovers - 1)
        for lease in leases:
            self._start_pass(lease)

    def lost_a_lease(self) -> None:
        """A lease write of this worker failed (``StoreUnavailable``): it may have committed
        all the same, leasing runs this worker never heard of. Its next lease attempt with no
        pass running gives back every lease of its own, as a restart with its id would, so
        that they are leased again now, not once their TTL has passed (an in-process send's
        lease too: ``IngestBatcher._deliver``)."""
        self._unheard = True
        self._wake.set()

    def give_back(self, run_id: str) -> None:
        """A run leased to this worker that gets no pass now (handed beyond its free slots):
        its lease expires at the next lease attempt (``_cut_short``), which the worker makes
        at once, and it is leased again there, or by another worker, with a fresh read."""
        self._cut_short.add(run_id)
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to stop (passes in flight finish first)."""
        self._stopping.set()
        self._wake.set()

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_ttl / 3
        watch = self.engine.clock_watch
        measuring: asyncio.Task[None] | None = None  # a measurement of the clock in flight
        try:
            while True:
                await asyncio.sleep(interval)
                run_ids = list(self.active)
                # an idle worker heartbeats too: it is alive. At the database's time while this
                # clock is beyond the bound, or stepped since the last judgement (its own would
                # keep the row and the leases alive for as long as it is ahead, or expire them
                # for as long as it is behind)
                now = self.engine.clock.now()
                stepped = watch.stepped(now)
                now = watch.store_time(now)
                try:
                    job = self._heartbeat_job(run_ids, now)
                    lost = await self.engine.writer.write(job, unordered=True)  # as the lease job
                except StoreUnavailable as exc:
                    self.outage.failed(exc)  # the passes' next commits check their leases
                    continue
                except StoreError as exc:
                    self._fail(exc)
                    return
                self.outage.recovered()
                self.heartbeats += 1
                # this machine's clock, now and then: measured beside the heartbeats, never
                # awaited by them (a slow measurement, a pool with no free connection, a
                # reader thread queued, held the next heartbeat: the leases expired)
                if (measuring is None or measuring.done()) and (stepped or watch.due()):
                    measuring = asyncio.create_task(watch.measure())
                for run_id in lost:
                    # Usually a pass that just committed its end (its lease is released); else
                    # another worker took the run over and this pass's next commit is refused.
                    log.debug("run %s: no longer leased by this worker", run_id)
        finally:
            if measuring is not None:
                measuring.cancel()
