"""This machine's clock measured against its database's while the process runs.

On PostgreSQL every time the engine writes is its own clock's (lease expiries, due times, the
times events were received, flow-control decisions, the leases a sender hands to a worker of
another process), and those written by different machines are compared with each other. A
process whose clock is beyond the store's bound refuses to open the database (``migrate``); a
clock stepped later (an NTP step, a virtual machine resumed, a clock set by hand) went
unnoticed. So each worker's heartbeat loop asks its engine's ``ClockWatch`` to measure again
(``due``: at most every ``CHECK_EVERY`` real seconds while within the bound, at every heartbeat
beyond it; ``measure``, in a task of its own that no heartbeat waits for; one round trip). Beyond
it, a worker held measures again at its looks too, a poll interval apart at most
(``measure_held``): the clock put right frees it then, not up to a heartbeat later.

Beyond the bound (``DurableStore.clock_refusal``) the watch logs an error with the measured
skew, the process's workers take no new lease (no lease attempt, no claim of named runs, no
hand-off: their offer is withdrawn; one not registered yet waits to register: ``held_at_start``)
and its sends raise ``ClockSkewError`` (nothing written;
its other writes of this clock's times outside a pass too, ``refuse_writes``: a replay's run is
due at its clock, a cancel's announcements start runs, an app's removal judges its workers
alive by their expiries, an SDK app's sync writes its crons' next fire times; pausing,
resuming and purging runs read no clock and are never refused):
what a send writes with its clock is what the open check protects (its new runs' due times, its
events' times, the throttle, rate-limit, debounce and idempotency decisions made at them, the
leases it hands to other processes' workers). Passes in flight go on and their leases are still
heartbeated, and the worker's registry row with them, at the database's time (``store_time``:
the database's time at the last judgement advanced by the monotonic clock, measured again at
each heartbeat while refused): at this clock's, a clock an hour ahead kept them alive for an
hour to the other machines (a crash then left its runs leased for an hour), one an hour behind
wrote them expired (its passes taken over by any worker, their step bodies run again). A
heartbeat also looks for a step not judged yet (``stepped``: this clock moved against the
monotonic one by over half the bound since the last judgement): it then writes the database's
time too and measures at once, not when the next measurement is due. Their commits are fenced
by their leases as always, and a lease that looks expired to another machine is taken over as a
hung worker's would be. Back within the bound: logged, and the workers lease again at once.

Sends keep the judgement fresh too, so a process without a worker (``stepline server
--no-worker``, an app that only sends) is not judged by its open's measurement for ever: a send
looks no further than ``fresh_until`` (one comparison of ``time.monotonic()``) while no refusal
stands. Past it (the last measurement ``CHECK_EVERY`` seconds old or more), the send measures
again beside it, in a reader thread it does not wait for (``Engine.read_later``; the sends
after it are judged by that measurement); one ``MEASURE_FIRST_AFTER`` seconds old or more (a
process that sends now and then), or a refusal ``CHECK_EVERY`` old (the process's workers
stopped while refused, or it has none: a clock back within the bound is not refused for ever),
is measured again before the send. A measurement begins by moving ``fresh_until``: the sends
made while it is in flight start no other; one measured before a send leaves ``fresh_until``
where it was until it ends, and the sends made meanwhile wait for it too (a burst after a quiet
spell is judged by it, not by the judgement it replaces).

Only with the system clock (a virtual clock's times are a test's own, ``MockClock``) and a
store whose times machines compare (``ClockChecked``: PostgreSQL). Otherwise the watch is
inactive: ``due`` is always False, so a send, a heartbeat or an admin write never measures nor
refuses (a SQLite file is used by one machine's clock: measuring it refused nothing and cost a
reader hop beside the sends every ``CHECK_EVERY``, one waited for after a quiet spell).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from stepline.clock import SystemClock
from stepline.errors import ClockSkewError, StoreError
from stepline.store.capabilities import ClockChecked

if TYPE_CHECKING:
    from stepline.engine.engine import Engine
    from stepline.engine.worker import Worker

log = logging.getLogger("stepline.worker")

CHECK_EVERY = 10.0  # real seconds between two measurements while within the bound
# a send never goes by a judgement this old (real seconds): it measures again first
MEASURE_FIRST_AFTER = 3 * CHECK_EVERY


class ClockWatch:
    """The last measurement of this machine's clock against the database's, for an engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        store, clock = engine.store, engine.clock
        real = isinstance(clock, SystemClock)
        self._store = store if real and isinstance(store, ClockChecked) else None
        self.refusal: str | None = None  # why leases and sends are refused now (None: they are not)
        self.skew: float | None = None  # the database's clock minus this machine's, last measured
        # the database's clock minus time.monotonic(), and this machine's minus it, as last
        # judged (``store_time``, ``stepped``)
        self._base: float | None = None
        self._local: float | None = None
        # time.monotonic() from which a measurement is due: the last one's plus CHECK_EVERY (at
        # once at first: the open's measurement is as old as the store); never without a store
        # to measure (inactive: a send compares it, and looks no further before it)
        self.fresh_until = time.monotonic() if self._store is not None else math.inf
        self.began = -math.inf  # time.monotonic() when the last measurement began
        self._lock = threading.Lock()  # workers of several event loops may measure at once
        # a measurement the sends wait for (``_measure_first``), in flight; its end releases them
        self._first: Future[None] | None = None

    def due(self) -> bool:
        """Whether a ``measure`` is due: every ``CHECK_EVERY`` seconds, at once while refused
        (never without a ``ClockChecked`` store, or with a virtual clock); the one test a
        send or another write of this clock's times outside a pass (``refuse_writes``) makes
        before it looks further."""
        if self._store is None:
            return False
        return self.refusal is not None or time.monotonic() >= self.fresh_until

    async def measure_held(self, every: float | None) -> None:
        """(A look of a worker held: refused) ``measure`` when the last measurement (any
        worker's, a heartbeat's, a send's) began ``every`` real seconds ago or more (the
        worker's poll interval: its looks, which a stream of wake-ups may make more often, then
        measure once a poll at most; None, a worker that does not poll, leaves it to its
        heartbeats). A held worker reads nothing else (an idle one reads its next due time at
        each poll), and the clock put right frees it at its next look, not a heartbeat later."""
        if every is None or self.refusal is None:
            return
        if time.monotonic() - self.began >= every:
            await self.measure()

    def stepped(self, now: float) -> bool:
        """Whether this machine's clock, reading ``now``, moved against the monotonic clock by
        over half the bound since the last judgement: a step (NTP, a virtual machine resumed,
        a clock set by hand) that no measurement judged yet. No round trip: a heartbeat looks
        each time (and measures at once when it sees one)."""
        local, store = self._local, self._store
        if local is None or store is None:
            return False
        return abs(now - time.monotonic() - local) > store.max_clock_skew / 2

    def store_time(self, now: float) -> float:
        """``now``, a time of this machine's clock, as the database's clock reads it while this
        clock is judged beyond the bound or ``stepped`` since the last judgement: the database's
        time at the last judgement, advanced by the monotonic clock (the times a worker's
        heartbeats write: never this clock's, which may have stepped again, or been put right,
        since). Else ``now`` itself (within the bound every time the engine writes is this
        clock's)."""
        base = self._base
        if base is None or (self.refusal is None and not self.stepped(now)):
            return now
        return time.monotonic() + base

    def _measuring(self) -> None:
        """(A measurement begins) the next is due ``CHECK_EVERY`` seconds from now (not while
        one the sends wait for is in flight: each send looks, and waits for it). Under the
        lock: a send beginning a measurement first at the same instant either comes before
        (``fresh_until`` stays) or after (it finds the judgement fresh), never in between
        (it began, then this moved ``fresh_until``: the sends meanwhile went on unmeasured)."""
        with self._lock:
            self.began = time.monotonic()
            if self._first is None:
                self.fresh_until = time.monotonic() + CHECK_EVERY

    async def measure(self) -> None:
        """Measure the skew now and judge it; a measurement that fails (a store that cannot be
        read for now: the worker's heartbeat reports the outage) leaves the last judgement
        standing, and never raises: the heartbeat loop that asks must go on."""
        store = self._store
        if store is None:
            return
        self._measuring()
        try:
            skew, took, local = await self._engine.read(_reading, store, self._engine.clock.now)
        except StoreError as exc:
            log.debug("the clock's skew could not be measured: %s", exc)
            return
        except Exception:  # never the heartbeat's end: its leases would expire
            log.warning("the clock's skew could not be measured", exc_info=True)
            return
        self._weigh(store, skew, took, local)

    def _measure_here(self, store: ClockChecked) -> None:
        """``measure`` in the calling thread (a send with no event loop of its own, or a
        reader thread measuring beside a send): never raises."""
        self._measuring()
        try:
            skew, took, local = _reading(store, self._engine.clock.now)
        except Exception as exc:
            failed = self._engine.store.store_error(exc)
            if isinstance(failed, StoreError):
                log.debug("the clock's skew could not be measured: %s", failed)
            else:
                log.warning("the clock's skew could not be measured", exc_info=True)
            return
        self._weigh(store, skew, took, local)

    def _weigh(self, store: ClockChecked, skew: float, took: float, local: float) -> None:
        """Judge ``skew``, measured over a round trip of ``took`` seconds when this machine's
        clock read ``local`` ahead of the monotonic clock."""
        # the server read its clock somewhere within the round trip: the skew is known within
        # half of it either way (a slow answer, a reader thread not run meanwhile, is not a
        # stepped clock); refused only beyond the bound all over it, released only within it
        half = took / 2
        nearest = math.copysign(max(0.0, abs(skew) - half), skew)  # (its nearest to none)
        beyond = store.clock_refusal(nearest) is not None
        within = (
            store.clock_refusal(skew - half) is None and store.clock_refusal(skew + half) is None
        )
        if not beyond and not within:
            log.debug(
                "the clock's skew measured over a %.3f s round trip (%+.3f s) tells nothing; "
                "the last judgement stands",
                took,
                skew,
            )
            return
        self._judge(skew, store.clock_refusal(skew) if beyond else None, local)

    def _judge(self, skew: float, refusal: str | None, local: float) -> None:
        with self._lock:
            before, self.refusal, self.skew = self.refusal, refusal, skew
            self._base, self._local = local + skew, local
        if refusal is not None and before is None:
            log.error(
                "ClockSkewError: %s. Until it is back within the bound this process takes no "
                "new lease and its sends raise ClockSkewError (passes in flight go on)",
                refusal,
            )
        elif refusal is None and before is not None:
            log.warning(
                "this machine's clock is back within the bound of the database's (%+.3f s "
                "from it): leases and sends resume",
                -skew,
            )
            self._engine.wake_workers()

    def _measure_first(self) -> tuple[Future[None], bool] | None:
        """(A send, past ``fresh_until`` or refused) The measurement to wait for before the
        send, and whether the caller makes it (``_measured_first``): the one in flight that
        sends wait for, or one begun now when the judgement is ``MEASURE_FIRST_AFTER``
        seconds old or a refusal ``CHECK_EVERY`` old. None otherwise: a judgement
        ``CHECK_EVERY`` old is measured again beside the send, in a reader thread it does not
        wait for."""
        store = self._store
        if store is None:
            return None
        with self._lock:
            first = self._first
            if first is not None:
                return first, False
            late = time.monotonic() - self.fresh_until  # (past CHECK_EVERY since the last)
            if late < 0:
                return None
            if self.refusal is not None or late >= MEASURE_FIRST_AFTER - CHECK_EVERY:
                first = self._first = Future()
                first.set_running_or_notify_cancel()  # (no waiter can cancel it for the others)
                return first, True
            # (``_measuring``, the lock held: the sends until it begins start no other)
            self.fresh_until = time.monotonic() + CHECK_EVERY
        self._engine.read_later(self._measure_here, store)
        return None

    def _measured_first(self, first: Future[None]) -> None:
        """Make the measurement ``first`` stands for (in the calling thread: a reader's, or a
        send's with no event loop), then release the sends waiting for it; never raises."""
        try:
            if self._store is not None:
                self._measure_here(self._store)
        finally:
            self._released(first)

    def _released(self, first: Future[None]) -> None:
        """The measurement ``first`` ended (or was never made: the engine closed): the next
        is due ``CHECK_EVERY`` seconds from now, and the sends waiting go on."""
        with self._lock:
            if self._first is first:
                self._first = None
                self.fresh_until = time.monotonic() + CHECK_EVERY
        if not first.done():
            first.set_result(None)

    async def refuse_sends_async(self) -> None:
        """``refuse_sends`` for a send on an event loop (measured first in the engine's
        reader, not on the loop)."""
        waited = self._measure_first()
        if waited is not None:
            first, mine = waited
            # made in a reader that no send's cancellation stops: the others wait for it too
            if mine and not self._engine.read_later(self._measured_first, first):
                self._released(first)  # (the engine closed: nothing measured)
            await asyncio.wrap_future(first)
        self._refuse()

    async def refuse_writes(self) -> None:
        """(A replay, a cancel, an app's removal, an SDK app's sync: a write of this machine's
        times outside a pass, as a send's: the new run a replay makes is due at them, a
        cancel's announcements start runs, a removal compares them with the expiries of the
        app's workers, a sync's crons fire at them) As ``refuse_sends_async``:
        ``ClockSkewError`` while the judgement, measured again first when too old, is beyond
        the bound."""
        if self.due():
            await self.refuse_sends_async()

    def refuse_sends(self) -> None:
        """(A send, past ``fresh_until`` or refused: ``Engine.send``'s test) Raise
        ``ClockSkewError`` while the last judgement is beyond the bound; a judgement too old
        is measured again first (in the calling thread: a send with no event loop of its
        own), or beside the send (``_measure_first``); a send made while a measurement
        before a send is in flight waits for it."""
        waited = self._measure_first()
        if waited is not None:
            first, mine = waited
            if mine:
                self._measured_first(first)
            else:
                first.result()
        self._refuse()

    def _refuse(self) -> None:
        refusal, skew = self.refusal, self.skew
        if refusal is not None and skew is not None:
            raise ClockSkewError(refusal, skew)


def _reading(store: ClockChecked, now: Callable[[], float]) -> tuple[float, float, float]:
    """(``store.clock_skew``, the seconds its measurement took on ``now``'s clock: its
    uncertainty is half of it, ``now``'s clock minus ``time.monotonic()`` meanwhile)."""
    before, start = now(), time.monotonic()
    skew = store.clock_skew(now)
    after, end = now(), time.monotonic()
    return skew, max(0.0, after - before), (before + after - start - end) / 2


async def held_at_start(worker: Worker) -> bool:
    """Whether ``worker``, not registered yet, waits for its engine's clock watch (beyond the
    bound) before its start-up write: its registry row's expiry, the times it releases its
    old leases at, its crons' next fire times and its triggers' are all this machine's clock's
    (an hour ahead: alive for an hour to the other machines, the next hour's cron run
    skipped). Looked at when ``due``, as ``refuse_writes`` does, but always measured first
    (at the first look, the open's measurement is as old as the store); while refused, it logs why
    once and waits as ``held_by_clock`` does (a wake-up, a poll interval at most: the
    worker measures again at each look, a poll interval apart at most, ``measure_held``; its
    heartbeats too; the watch wakes the workers when the clock is back within the bound).
    Never ready meanwhile: no send hands it runs."""
    watch = worker.engine.clock_watch
    if worker.clock_held:
        await watch.measure_held(worker.poll_interval)
    elif watch.due():
        await watch.measure()
    refusal = watch.refusal
    if refusal is None:
        if worker.clock_held:
            log.info("worker %s: registers (the clock is back within the bound)", worker.worker_id)
            worker.clock_held = False
        return False
    if not worker.clock_held:
        log.warning(
            "worker %s waits to register (its registry row, released leases and crons' next "
            "fire times would be written at this machine's clock, beyond the bound: %s); it "
            "starts once the clock is back within it",
            worker.worker_id,
            refusal,
        )
        worker.clock_held = True
    if not worker._stopping.is_set():
        # (what a wake-up said is left: its first lease attempt, once registered, reads all)
        worker._wake.take()
        clock, poll = worker.engine.clock, worker.poll_interval
        await clock.sleep_until(None if poll is None else clock.now() + poll, worker._wake)
    return True


async def held_by_clock(worker: Worker) -> bool:
    """Whether ``worker`` is held by its engine's clock watch (beyond the bound): it then takes
    no new lease, its offer of hand-offs withdrawn the first time, and this waits for a
    wake-up (the watch wakes the workers when the clock is back within the bound), a poll
    interval at most; held, it measures again first (``measure_held``), and not held, it
    measures first when its clock ``stepped`` since the last judgement. Back within the
    bound, the offer is made again."""
    watch = worker.engine.clock_watch
    if worker.clock_held:
        await watch.measure_held(worker.poll_interval)
    elif watch.stepped(worker.engine.clock.now()):
        # a step not judged yet: judged before this lease attempt writes its times (its
        # passes' leases among them, an hour expired for a clock an hour behind), not when a
        # heartbeat sees it, up to a third of the lease TTL later
        await watch.measure()
    refused = watch.refusal is not None
    named = worker._named
    if refused and not worker.clock_held:
        await named.withdraw()
        worker.clock_held = True  # (once withdrawn)
    elif not refused and worker.clock_held:
        if named.handed is not None:
            await worker.engine.writer.write(named.offer)
        worker.clock_held = False
    if refused and not worker._stopping.is_set():
        clock, poll = worker.engine.clock, worker.poll_interval
        await clock.sleep_until(None if poll is None else clock.now() + poll, worker._wake)
    return refused
