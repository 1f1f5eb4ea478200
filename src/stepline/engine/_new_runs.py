"""The lease an in-process send takes for its worker (``Worker.lease_new_runs``): a part of the
send's own write job, so the runs an event starts are leased in the event's transaction.

A transaction that leases its new runs by name (``LeasesNewRuns``: PostgreSQL's ``LEASE_NAMED``,
read with the commit) takes them so when they are all it started: the send is then one round
trip with no read before its commit, committed on the event loop (docs/design.md, "An
in-process send's lease, by name").

A store whose ``lease_due`` reads no run (SQLite) is asked, there too, for the runs it leased
(``LoadsLeased``, ``loaded``; the worker's own lease attempts too): their passes start with the
run as that transaction left it, not after a read of their own on a reader thread (a hop there
and back and a read transaction: about a fifth of an idle worker's event -> first step).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from typing import cast

from stepline.engine._announce import announce_failed
from stepline.engine._spare_slot import alone, fitting
from stepline.engine.engine import Engine
from stepline.store.capabilities import LeasesNewRuns, LoadsLeased
from stepline.store.interface import StoreTx
from stepline.store.records import FunctionSet, IngestResult, Lease, SpentRun

# the leases, given once the write committed (a lease by name reads them with its commit)
Leased = Callable[[], list[Lease]]
LeaseJob = Callable[[StoreTx, Sequence[str]], tuple[Leased, list[IngestResult]]]

# whether a kind of transaction reads the runs it leased, or leases its new runs by name
# (isinstance on a runtime-checkable Protocol costs ~8.5 µs: decided once per kind)
_LOADS: dict[type, bool] = {}
_BY_NAME: dict[type, bool] = {}


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
    """Lease due runs for the runs ``started`` (``lease(tx, started)``: the run ids the write
    created) within ``free`` slots. ``here`` (the functions with a pass in the worker): the
    last of the ``free`` slots is the worker's spare (``_spare_slot``), leased only from the
    other functions (nor one this lease took).
    A transaction that leases its new runs by name (``LeasesNewRuns``, PostgreSQL) leases
    those that fit when every run started is one of its leasable new runs (due now, without
    concurrency keys) of a served function: one statement sent with the commit, no read
    before it (``_by_name``); one it does not lease (something of its function ahead of it)
    is looked for by the worker, woken as for any run not leased here
    (``Engine.after_ingest``). Otherwise up to ``len(started)`` due runs in the fair order
    (``lease_due``), after heartbeating the passes ``running`` (as the lease job does, so
    none looks expired; not for a lease of the spare alone, which reads none of their
    functions' runs).
    Returns the leases (given once committed) and what announcing the runs failed instead
    (the re-entry cap) did."""

    def lease(tx: StoreTx, started: Sequence[str]) -> tuple[Leased, list[IngestResult]]:
        if not started or free <= 0:
            return list, []
        served = engine.served
        kind = type(tx)
        by_name = _BY_NAME.get(kind)
        if by_name is None:
            by_name = _BY_NAME[kind] = isinstance(tx, LeasesNewRuns)
        if by_name:
            named = _by_name(cast(LeasesNewRuns, tx), started, served)
            if named:
                return cast(LeasesNewRuns, tx).lease_new_runs(
                    worker_id, now, named, ttl, served, max_passes
                ), []
        limit = min(free, len(started))
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
        return functools.partial(list, leases), announced

    def _by_name(tx: LeasesNewRuns, started: Sequence[str], served: FunctionSet) -> list[str]:
        """The runs ``started`` to lease by name, those that fit the free slots; none when one
        of them is not a leasable new run of a served function, or none fits (the spare kept
        for another function: ``lease_due`` may lease it from the others)."""
        new_runs, functions = tx.leasable_new_runs(), served.function_ids
        runs: list[tuple[str, str | None]] = []
        for run_id in started:
            function_id = new_runs.get(run_id)
            if function_id is None or function_id not in functions:
                return []
            runs.append((run_id, function_id))
        if here is None:
            return [run_id for run_id, _ in runs[:free]]
        return fitting(free, runs, here)

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
