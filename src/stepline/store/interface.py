"""The Store seam: the only way the engine reaches storage. Domain verbs, no SQL.

Writes happen inside ``store.transaction()``, which yields a ``StoreTx``. Each verb on a ``StoreTx``
is atomic on its own (a failed verb leaves nothing behind) and the whole transaction is committed
durably when the ``with`` block exits; the engine batches many verbs from many runs into one
transaction (group commit) and acknowledges none before the commit returns.

Reads outside a transaction see committed state. Implementations are safe to call from several
threads (one write transaction at a time per process) and, for SQLite and PostgreSQL, from
several processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from stepline.store.records import (
    EventIngest,
    EventRecord,
    HistoryRecord,
    IngestResult,
    Lease,
    PassCommit,
    RunFilter,
    RunRecord,
    RunState,
    StepRecord,
    WaitMatcher,
)


class StoreTx(Protocol):
    """The write verbs, available inside ``Store.transaction()``."""

    def ingest(
        self, items: Sequence[EventIngest], now: float, wait_matches: WaitMatcher
    ) -> list[IngestResult]:
        """Store events; for each one not seen before (by sender id, 24 h) create its runs and
        resolve the waits it satisfies (memo written, wait removed, run made due)."""
        ...

    def commit_pass(self, commit: PassCommit, now: float, wait_matches: WaitMatcher) -> None:
        """Apply one pass's commit. Raises ``LeaseLostError`` (and applies nothing) when the run's
        lease token is not ``commit.lease_token`` any more."""
        ...

    def lease_due(self, owner: str, now: float, limit: int, ttl: float) -> list[Lease]:
        """Lease up to ``limit`` runs that are due (or whose lease expired) until ``now + ttl``."""
        ...

    def heartbeat(self, owner: str, run_ids: Sequence[str], now: float, ttl: float) -> list[str]:
        """Extend ``owner``'s leases; returns the run ids whose lease ``owner`` no longer holds."""
        ...

    def release_owner(self, owner: str, now: float) -> int:
        """Make every run leased by ``owner`` due now (a restarted worker reclaims its runs)."""
        ...

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        """Time out the run's waits whose deadline passed: the wait is removed and its step memo
        becomes COMPLETED with a null result. Returns the step hashes timed out."""
        ...

    def cancel_run(self, run_id: str, now: float, reason: str) -> bool:
        """Cancel a run that has not ended: status CANCELLED, its queue item and waits removed.
        Returns False if the run does not exist or has already ended."""
        ...


class Store(Protocol):
    """A durable home for events, runs, memoized steps, waits, timers and histories."""

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTx]:
        """A write transaction, committed durably on exit (rolled back on an exception)."""
        ...

    def load_run(self, run_id: str) -> RunState | None:
        """A run with its trigger events, memo and waits."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """One run."""
        ...

    def list_runs(self, query: RunFilter) -> list[RunRecord]:
        """Runs matching the filter, newest first."""
        ...

    def get_steps(self, run_id: str) -> list[StepRecord]:
        """A run's memo rows in execution order."""
        ...

    def get_history(self, run_id: str) -> list[HistoryRecord]:
        """A run's history in order."""
        ...

    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        """Events by Stepline id, in the order asked."""
        ...

    def next_due_at(self) -> float | None:
        """The earliest time any run becomes due (queue or lease expiry), None if nothing waits."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
