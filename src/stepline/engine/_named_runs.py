"""A worker's runs named by a wake-up (PostgreSQL's ``NOTIFY`` naming the new runs another
process made due): leased by name (``NamedLeases``: one statement), claimed as the wake-up is
read (``claim``: the lease sent in that very callback), or handed to the worker with their
leases by the sender's own transaction (``HandedLeases``: no lease at all on the worker's side).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from stepline._driven import Driven
from stepline.engine._spare_slot import fitting
from stepline.errors import StoreError, StoreUnavailable
from stepline.store.capabilities import HandedLeases, NamedLeases, NamedLeasesAlone, OffersHandOffs
from stepline.store.interface import Replay, StoreTx, WouldBlock
from stepline.store.records import Lease

if TYPE_CHECKING:
    from stepline.engine.worker import Worker

log = logging.getLogger("stepline.worker")
# after the worker gave back its leases (``Worker.lost_a_lease``), hand-offs it reads within
# this share of its lease TTL (plus a second of clock skew) are given back, not started: one
# taken before the give-back may have been released by it (and leased again since); an older
# one is given back anyway (``HandOffs.take``: over half its TTL)
RECLAIM_WINDOW = 0.5


class NamedRuns:
    """The named runs of ``worker``, whose store is ``store`` (``handoffs``: take hand-offs
    when the store has them)."""

    def __init__(self, worker: Worker, store: object, handoffs: bool) -> None:
        self._w = worker
        # the store, if it leases named runs alone (looked at once: a protocol's isinstance
        # took 40 µs on a wake-up's way to its lease)
        self.alone = store if isinstance(store, NamedLeasesAlone) else None
        # the store, if its senders may hand new runs to this worker with their leases
        self.handed = store if handoffs and self.alone and isinstance(store, HandedLeases) else None
        self.sleeping = False  # the worker waits for work (Worker._idle)
        self.claims: set[Driven] = set()  # leases of named runs claimed as they were named
        self.claimed = 0  # the runs those leases are for: the worker's free slots are fewer

    # -- hand-offs --------------------------------------------------------------------------------
    def accept(self) -> None:
        """(Before the worker's row offers them) keep the leases wake-ups hand to it."""
        if self.handed is not None:
            self.handed.accept_handoffs(self._w.worker_id, self._w.lease_ttl)

    def offer(self, tx: StoreTx) -> None:
        """(In the worker's start job) its row offers hand-offs: its slots and lease TTL."""
        if self.handed is not None and isinstance(tx, OffersHandOffs):
            tx.offer_handoffs(self._w.worker_id, self._w.concurrency, self._w.lease_ttl)

    async def withdraw(self) -> None:
        """(Stopping) take no more hand-offs; those handed meanwhile still start here."""
        worker = self._w
        if self.handed is None or not worker.ready.is_set() or worker.failed is not None:
            return

        def job(tx: StoreTx) -> None:
            if isinstance(tx, OffersHandOffs):
                tx.offer_handoffs(worker.worker_id, None, worker.lease_ttl)

        try:
            await worker.engine.writer.write(job)
        except Exception:
            log.warning("worker %s: could not withdraw its offer", worker.worker_id, exc_info=True)

    def refuse(self) -> None:
        """(Stopped) keep no more of its hand-offs."""
        if self.handed is not None:
            self.handed.refuse_handoffs(self._w.worker_id)

    def _take_handed(self, runs: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
        """Start the passes of ``runs`` handed to the worker, each in a free slot; the rest are
        returned. A run handed beyond the worker's free slots (the store saw a slot it counts
        as taken: a pass whose function is unwinding, a lease attempt in flight, the spare held
        by an in-process send) is given back
        (``Worker.give_back``: never started later from the handed state, which may be stale
        by then: review R1, R3), as is one whose lease looks older than half its TTL
        (``HandedLeases.take_handed``)."""
        assert self.handed is not None
        worker = self._w
        run_ids = [run_id for _, run_id in runs]
        now = worker.engine.clock.now()
        leases, stale = self.handed.take_handed(worker.worker_id, run_ids, now)
        if stale:  # more than half a TTL old by this machine's clock: leased again at once
            for run_id in stale:
                worker.give_back(run_id)
            runs = [(fn, run_id) for fn, run_id in runs if run_id not in stale]
        if not leases:
            return runs
        leases = _saying_functions(leases, {run_id: fn for fn, run_id in runs})
        worker.handed += len(leases)
        worker.engine.changes.publish_runs([lease.run_id for lease in leases])
        free = max(0, worker.concurrency - len(worker.active) - self.claimed)
        reclaimed = worker.reclaimed_at
        window = RECLAIM_WINDOW * worker.lease_ttl + 1.0
        if reclaimed is not None and worker.engine.clock.now() - reclaimed < window:
            free = 0  # maybe taken before its leases were given back: given back too
        room, spare = worker._room(free)
        # in run id order: the order in which the sender's ``HAND_OFF`` gave them the worker's
        # slots (its spare only to a function with no lease here nor earlier among them)
        pairs = sorted((lease.run_id, lease.function_id) for lease in leases)
        starting = fitting(room, pairs, worker._here()) if spare else [r for r, _ in pairs][:room]
        started = set(starting)
        for lease in leases:
            if lease.run_id in started:
                worker._start_pass(lease)
            else:  # beyond its free slots, or the spare kept for another function
                worker.give_back(lease.run_id)
        taken = {lease.run_id for lease in leases}
        return [(fn, run_id) for fn, run_id in runs if run_id not in taken]

    # -- claims and leases by name ----------------------------------------------------------------
    def claim(self, runs: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
        """(``WakeSignal.claim``, in the worker's loop, as a wake-up names ``runs``) Lease
        those of the worker's functions at once, as the loop the wake-up would start would
        (``Worker._serve_once``), when that loop would lease them by name and nothing else:
        the worker waits for work, was not woken to look for any, saw no backlog, and has a
        slot for each. The lease is sent in this very callback (``Driven``: no task) and its
        passes start in the callback that reads its reply: the wake-up's way to its passes
        saves the two turns of the loop that woke the worker's task and resumed it after the
        reply. Runs handed to the worker with their leases (``HandedLeases``) start at once,
        whatever it is doing. Returns the runs left to the signal (it wakes the worker as
        usual). None while the clock is beyond the database's bound (``_clock_watch``)."""
        if self._w.engine.clock_watch.refusal is not None:
            return runs
        if self.handed is not None:
            runs = self._take_handed(runs)
            if not runs:
                return runs
        worker = self._w
        if not self.sleeping or worker._wake.is_set() or worker._backlogged:
            return runs  # busy (it looks for work when it is done), or woken already
        served = worker.engine.served.function_ids
        named = {run_id: fn for fn, run_id in runs if fn in served}
        room, spare = worker._room(worker.concurrency - len(worker.active) - self.claimed)
        pairs = list(named.items())
        fits = fitting(room, pairs, worker._here()) if spare else [r for r, _ in pairs][:room]
        if not named or len(fits) < len(named) or worker._stopping.is_set():
            return runs
        self.claimed += len(named)
        claim = Driven(self._lease_claimed(named), asyncio.get_running_loop())
        if not claim.done():
            self.claims.add(claim)
            claim.add_done_callback(self.claims.discard)
        return ()

    async def _lease_claimed(self, named: dict[str, str]) -> None:
        """The lease of a claim (``claim``): the runs it did not get are looked for in the
        fair order (the worker is woken); a store that failed is handled as a loop's lease
        attempt would be."""
        worker = self._w
        try:
            if worker.on_wake is not None:
                worker.on_wake(False, named)
            mine = list(named)
            leases = await self.lease(mine, named)
            if len(leases) < len(mine):
                worker._wake.set()
        except StoreUnavailable as exc:
            worker.outage.failed(exc)
            worker.lost_a_lease()
            worker._wake.set()  # the worker's loop backs off and tries again
        except StoreError as exc:
            worker._fail(exc)
        except Exception:
            log.exception("worker %s: a lease of named runs failed", worker.worker_id)
            worker._wake.set()
        finally:
            self.claimed -= len(named)
            worker.loops += 1

    async def lease(
        self, run_ids: list[str], functions: Mapping[str, str] | None = None
    ) -> list[Lease]:
        """Lease ``run_ids`` by name (``NamedLeases``: those ``lease_due`` would take first)
        and start their passes: in a transaction of their own sent from this loop when the
        store can (``NamedLeasesAlone``: one statement, without a transaction's set-up around
        it), else (nothing sent, or nothing committed: ``WouldBlock``, ``Replay``) by the
        writer. ``functions``: each run's function, for leases that do not say it."""
        worker = self._w
        engine = worker.engine
        owner, now, ttl, served, max_passes = (
            worker.worker_id,
            engine.clock.now(),
            worker.lease_ttl,
            engine.served,
            worker.max_passes,
        )
        leases = None
        if self.alone is not None:
            try:
                leases = await self.alone.lease_named_alone(
                    owner, now, run_ids, ttl, served, max_passes
                )
            except (WouldBlock, Replay):
                pass
        if leases is None:

            def job(tx: StoreTx) -> Callable[[], list[Lease]]:
                if not isinstance(tx, NamedLeases):  # only such a store names runs
                    return list
                return tx.lease_named(owner, now, run_ids, ttl, served, max_passes)

            leases = (await engine.writer.write(job))()
        if functions:
            leases = _saying_functions(leases, functions)
        worker.leased_by_name += len(leases)
        worker.outage.recovered()
        engine.changes.publish_runs([lease.run_id for lease in leases])
        for lease in leases:
            worker._start_pass(lease)
        return leases


def _saying_functions(leases: Sequence[Lease], functions: Mapping[str, str]) -> list[Lease]:
    """``leases``, each saying its run's function (of ``functions``) if it did not (the
    worker's spare slot goes by the functions of its passes: ``_spare_slot``)."""
    return [
        replace(lease, function_id=functions.get(lease.run_id))
        if lease.function_id is None
        else lease
        for lease in leases
    ]
