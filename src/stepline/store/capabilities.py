"""What a store may do beyond the Store seam (``store/interface.py``): each a protocol the engine
checks with ``isinstance`` and uses where the store has it. Wake-ups from other processes and the
leases they name or hand over (PostgreSQL), events stored unheard and the announcements an older
version owed (memory, SQLite), optimistic group commits (PostgreSQL, SQLite), a bound on this
machine's clock against the database's (PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol, runtime_checkable

from stepline.store.interface import StoreTx
from stepline.store.records import MAX_PASSES_WITHOUT_PROGRESS, FunctionSet, Lease


@runtime_checkable
class WakeupSource(Protocol):
    """A store that tells a process when other processes may have made work due (PostgreSQL's
    ``LISTEN/NOTIFY``). Stores without it (memory, SQLite) rely on the in-process wake-up and
    the workers' poll."""

    def watch(self, on_wake: Callable[[Sequence[tuple[str, str]]], None]) -> Callable[[], None]:
        """Call ``on_wake`` (from another thread) whenever a committed write of any process
        may have made work due; returns the function that stops watching. Its argument names
        the (function id, run id) of new runs the write made due, when that is all it did and
        they are few (else it is empty: look for any due work): a worker may lease those with
        its transaction's ``lease_named`` (``NamedLeases``). Called again with the same
        ``on_wake``, it watches no more than before and returns the same function; in a
        running event loop, that loop may read the notifications from then on (when the loop
        they were read in stopped)."""
        ...


@runtime_checkable
class NamedLeases(Protocol):
    """A transaction of a ``WakeupSource`` store: leases runs named by a wake-up."""

    def lease_named(
        self,
        owner: str,
        now: float,
        run_ids: Sequence[str],
        ttl: float,
        functions: FunctionSet,
        max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
    ) -> Callable[[], list[Lease]]:
        """Lease those of ``run_ids`` that ``lease_due`` would take first, in one statement
        and without a round trip of their own: runs of ``functions``, due, not leased, without
        concurrency keys, of an unpaused function, that have not spent their passes nor passed
        their start deadline, and with nothing of their function ahead of them in the queue
        order (a due run other than the named ones, an expired lease); the others are left to
        ``lease_due``. They are marked as ``lease_due`` marks them. Returns the function that
        gives the leases once the transaction committed."""
        ...


@runtime_checkable
class LeasesNewRuns(Protocol):
    """A transaction that leases the runs it created by name, with its commit (PostgreSQL:
    ``lease_named``'s one statement, its result read after the commit): an in-process send
    leases its new runs for its worker without a read before its commit."""

    def leasable_new_runs(self) -> Mapping[str, str]:
        """The runs this transaction created so far that are due now, without concurrency
        keys, and not leased by it (run id: function id)."""
        ...

    def lease_new_runs(
        self,
        owner: str,
        now: float,
        run_ids: Sequence[str],
        ttl: float,
        functions: FunctionSet,
        max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
    ) -> Callable[[], list[Lease]]:
        """``NamedLeases.lease_named`` of ``run_ids`` (of ``leasable_new_runs``), each lease
        saying its function; the transaction's wake-up no longer names them (as the runs a
        ``lease_due`` of its took): one it does not lease (something of its function ahead of
        it) is left to the caller's worker, which looks for it (a full lease attempt)."""
        ...


class Flushed:
    """The flush to disk of a transaction committed without waiting for it (``FlushesLater``).
    ``wait``, set by the store once the transaction committed, is done once the transaction
    is on disk, or fails with ``StoreUnavailable`` (committed, but perhaps not on disk: its
    outcome is unknown); None: the commit itself waited for the flush, as any durable
    commit (the store could not defer it: committed on its thread, no idle connection)."""

    __slots__ = ("asked", "owed", "wait")

    def __init__(self) -> None:
        # the store's own: flush_later was called; the commit was sent without waiting
        self.asked = self.owed = False
        self.wait: asyncio.Future[None] | None = None


@runtime_checkable
class FlushesLater(Protocol):
    """A transaction that may commit without waiting for its WAL's flush and wait for that
    flush after its commit (PostgreSQL, committed on an event loop): an in-process send's
    worker starts the passes of the runs it leased at the commit, a disk flush sooner, and
    the senders are acknowledged once the flush is done (docs/design.md, "An in-process
    send's passes start before its flush")."""

    def flush_later(self) -> Flushed:
        """Ask for it (a durable transaction that leased its new runs by name, committed on
        its loop; else the commit waits for its flush as before: ``Flushed.wait`` None)."""
        ...


@runtime_checkable
class NamedLeasesAlone(Protocol):
    """A ``WakeupSource`` store that leases runs named by a wake-up in a transaction of their
    own from an event loop, without blocking it (PostgreSQL: one statement, one round trip)."""

    async def lease_named_alone(
        self,
        owner: str,
        now: float,
        run_ids: Sequence[str],
        ttl: float,
        functions: FunctionSet,
        max_passes: int = MAX_PASSES_WITHOUT_PROGRESS,
    ) -> list[Lease]:
        """``NamedLeases.lease_named`` as a transaction of its own, committed when this
        returns, called in the running event loop. Raises ``WouldBlock`` when it would have
        to wait other than for its reply (nothing was sent), ``Replay`` when nothing
        committed, ``StoreUnavailable`` when its outcome is unknown (the connection broke
        after it was sent): as ``LoopCommits.commit_on_loop``."""
        ...


@runtime_checkable
class HandedLeases(Protocol):
    """A ``WakeupSource`` store whose senders may lease a new run to an idle worker that offers
    hand-offs (``OffersHandOffs``), its wake-up carrying the lease (PostgreSQL): the worker
    starts the pass without a lease of its own."""

    def accept_handoffs(self, owner: str, ttl: float) -> None:
        """Keep the leases wake-ups hand to ``owner`` (whose leases last ``ttl`` seconds) until
        it takes them (``take_handed``)."""
        ...

    def refuse_handoffs(self, owner: str) -> None:
        """Keep no more of them (those kept are dropped: their leases expire)."""
        ...

    def take_handed(
        self, owner: str, run_ids: Iterable[str], now: float
    ) -> tuple[list[Lease], list[str]]:
        """The leases of ``run_ids`` a wake-up handed to ``owner`` (each once), the run as
        the lease left it in ``Lease.loaded``, and the runs of those taken more than half
        their TTL before ``now``: never started from their handed state (it may have expired
        and another worker may have taken the run and committed steps the handed state does
        not have), given back (``Worker.give_back``: leased again with a fresh read); called
        in the event loop, never blocks."""
        ...


@runtime_checkable
class LoadsLeased(Protocol):
    """A write transaction that reads the runs it just leased (SQLite, whose ``lease_due``
    reads none): the runs a worker's lease attempt or an in-process send leased start their
    pass loaded (``Lease.loaded``), not read again on a reader thread once committed (two
    thread hops and a read transaction a pass)."""

    def load_leased(self, leases: Sequence[Lease]) -> list[Lease]:
        """``leases`` (taken in this transaction), each with ``loaded`` set to the run as this
        transaction reads it now; one this transaction cannot decode keeps ``loaded`` None
        (its pass reads it again, and fails the attempt there)."""
        ...


@runtime_checkable
class OffersHandOffs(Protocol):
    """A write transaction in which a worker offers to take hand-offs (``HandedLeases``)."""

    def offer_handoffs(self, owner: str, slots: int | None, ttl: float) -> None:
        """``owner`` (registered) takes leases of new runs while it has fewer than ``slots``
        live leases, each for ``ttl`` seconds; ``slots`` None: it takes none from now on."""
        ...


@runtime_checkable
class ClockChecked(Protocol):
    """A store whose times are written by processes on several machines and compared with each
    other, so this machine's clock must stay within ``max_clock_skew`` of the database's
    (PostgreSQL); the engine's clock watch measures it again while the process runs
    (``engine/_clock_watch.py``). SQLite has none (one file, used by one machine's clock: its
    ``DurableStore.clock_skew`` is 0, it refuses no skew, and measuring it only cost reader
    hops), nor does the memory store: their clock watch is inactive."""

    max_clock_skew: float  # seconds either way beyond which this machine's clock is refused

    def clock_skew(self, now: Callable[[], float] | None = None) -> float:
        """The database's clock minus ``now``'s, in seconds (a round trip on PostgreSQL)."""
        ...

    def clock_refusal(self, skew: float) -> str | None:
        """Why this machine may not use the database with ``skew``; None within the bound."""
        ...


@runtime_checkable
class UnheardEvents(Protocol):
    """A transaction that stores events nothing hears without planning or matching them (memory,
    SQLite): the announcements of the runs a batch of events cancelled, made from their trigger
    events still encoded (``engine/_announce.py``). A store without it (PostgreSQL) has them
    ingested as any event."""

    def encoded_run_events(self, run_ids: Sequence[str]) -> list[list[tuple[str, bytes]]]:
        """The events that triggered each run, in order, as ``run_events`` gives them: each
        one's name and its payload (``EventRecord.payload()``) encoded as JSON."""
        ...

    def store_unheard(
        self, events: Sequence[tuple[str, str, bytes]], now: float, sender: FunctionSet | None
    ) -> bool:
        """Store these events (each its Stepline id, name and data encoded as JSON; no user
        data, no sender id, sent and received at ``now``) if the ingest order would do nothing
        else with them: no wait and no cancel matcher of their names, and no function of the
        trigger catalog listening to them but ``sender``'s (which planned them and started no
        run: ``EventIngest.sender``). False, having stored nothing, when something may hear
        them: ``ingest`` them then."""
        ...


@runtime_checkable
class KeptAnnouncements(Protocol):
    """A transaction of a store that keeps the announcements nothing hears of a run cancelled
    in it as one small row, their data made again from the run when they are read (SQLite
    schema 27: ``store/sqlite/_derived.py``); every reader of events shows them as
    ``UnheardEvents.store_unheard`` would have stored them."""

    def store_cancelled_unheard(
        self,
        cancelled: Sequence[tuple[str, str]],
        reason: str,
        now: float,
        sender: FunctionSet | None,
        report: bool = True,
    ) -> list[str] | None:
        """Store the announcements of the runs ``cancelled`` in this transaction (each its run
        id and function id) for ``reason``, sent at ``now``, as ``store_unheard`` stores those
        ``engine/_announce.cancelled_events`` makes (the same names, ids in the same order,
        data), if nothing but storing them would be done with them (see ``store_unheard``).
        Returns their ids (none unless ``report``), or None, having stored nothing, when
        something may hear them."""
        ...


class OwedAnnouncement(NamedTuple):
    """A run whose announcements a transaction owes (``OwedAnnouncements``): its place in the
    order they were owed, its function (None: the run is gone), why it was cancelled, when."""

    seq: int
    run_id: str
    function_id: str | None
    reason: str
    at: float


@runtime_checkable
class OwedAnnouncements(Protocol):
    """A transaction of a store where the version before owed the announcements of runs its
    senders cancelled (SQLite schema 24: the cancellation committed with a small owed row, the
    ``inngest/function.finished`` / ``.cancelled`` events to be written later). This version
    owes none; ``Engine.announce_owed`` (a worker's housekeeping) writes those left, with the
    data, names and time they would have had."""

    def owed_announcements(self, limit: int) -> list[OwedAnnouncement]:
        """Up to ``limit`` of the runs whose announcements are owed, oldest first."""
        ...

    def forget_owed_announcements(self, through: int) -> None:
        """The owed announcements up to ``through`` (an ``OwedAnnouncement.seq``) were made."""
        ...


@runtime_checkable
class OptimisticStore(Protocol):
    """A store that can apply a group commit's jobs without a savepoint each (PostgreSQL: their
    statements sent together, one round trip instead of one per job; SQLite: no SAVEPOINT and
    RELEASE per verb). Any failure in it raises ``Replay``, except a lost connection or a
    failed BEGIN or COMMIT (``StoreUnavailable``: its outcome may be unknown). Its jobs must
    therefore be repeatable: a job's effects outside the transaction
    are its return value (the writer's contract)."""

    def optimistic_transaction(self) -> AbstractContextManager[StoreTx]:
        """A write transaction without savepoints, committed at the end of the block unless
        anything failed in it (``Replay``)."""
        ...
