"""The lease an in-process send takes for its worker (``Worker.lease_new_runs``): a part of the
send's own write job, so the runs an event starts are leased in the event's transaction.

A store whose ``lease_due`` reads no run (SQLite) is asked, there too, for the runs it leased
(``LoadsLeased``, ``loaded``; the worker's own lease attempts too): their passes start with the
run as that transaction left it, not after a read of their own on a reader thread (a hop there
and back and a read transaction: about a fifth of an idle worker's event -> first step).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import cast

from stepline.engine._announce import announce_failed
from stepline.engine._spare_slot import alone
from stepline.engine.engine import Engine
from stepline.store.capabilities import LoadsLeased
from stepline.store.interface import StoreTx
from stepline.store.records import IngestResult, Lease, SpentRun

LeaseJob = Callable[[StoreTx, int], tuple[list[Lease], list[IngestResult]]]

# whether a kind of transaction reads the runs it leased (isinstance on a runtime-checkable
# Protocol costs ~8.5 µs: decided once per kind)
_LOADS: dict[type, bool] = {}


def lease_job(
    engine: Engine,
    worker_id: str,
    running: list[str],
    free: int,
    now: float,
    ttl: float,
    max_passes: int,
    here: Collection[str | None] | None = None,
) -> LeaseJob:
    """Lease up to ``started`` due runs (of ``lease(tx, started)``) within ``free`` slots,
    after heartbeating the passes ``running`` (as the lease job does, so none looks expired;
    not for a lease of the spare alone, which reads none of their functions' runs). ``here``
    (the functions with a pass in the worker): the last of the ``free`` slots is the worker's
    spare (``_spare_slot``), leased only from the other functions (nor one this lease took).
    Returns the leases and what announcing the runs failed instead (the re-entry cap) did."""

    def lease(tx: StoreTx, started: int) -> tuple[list[Lease], list[IngestResult]]:
        if started <= 0 or free <= 0:
            return [], []
        limit, served = min(free, started), engine.served
        # a lease of the spare alone reads no run of a function with a pass here (whose leases
        # the heartbeat keeps from looking expired): 99 row updates fewer behind a backlog
        if running and (here is None or limit > 1 or limit < free or None in here):
            tx.heartbeat(worker_id, running, now, ttl)
        failed: list[SpentRun] = []
        if here is None or limit < free:
            leased = tx.lease_due(worker_id, now, limit, ttl, served, max_passes, None, failed)
        else:  # the lease fills the worker: its last slot is the spare
            leased = []
            if limit > 1:
                leased = tx.lease_due(
                    worker_id, now, limit - 1, ttl, served, max_passes, None, failed
                )
            others = alone(served, {*here, *(lease.function_id for lease in leased)})
            if others is not None:
                leased += tx.lease_due(worker_id, now, 1, ttl, others, max_passes, None, failed)
        leases = loaded(tx, leased)
        announced = announce_failed(engine, tx, failed, now, max_passes) if failed else []
        return leases, announced

    return lease


def loaded(tx: StoreTx, leases: list[Lease]) -> list[Lease]:
    """``leases``, taken in ``tx``, each with the run as ``tx`` reads it (``Lease.loaded``)
    when ``tx`` reads the runs it leased (``LoadsLeased``: SQLite); as they are otherwise
    (PostgreSQL's ``lease_due`` loads them itself)."""
    if not leases:
        return leases
    kind = type(tx)
    loads = _LOADS.get(kind)
    if loads is None:
        loads = _LOADS[kind] = isinstance(tx, LoadsLeased)
    return cast(LoadsLeased, tx).load_leased(leases) if loads else leases
