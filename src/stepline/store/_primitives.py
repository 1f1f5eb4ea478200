"""The state primitives every store backend supplies to the shared algorithms.

The ingest order (``_ingest_rules``), the ``commit_pass`` sequence (``_pass_rules``) and the
flow-control decisions (``_admission_rules``) live once; a backend implements the small reads and
writes below over its own storage, inside its own write transaction. Each primitive states its
**exactness contract**: what it must decide by itself, atomically, when several processes write
to one database at once (SQLite serializes writers, so any implementation is exact there;
PostgreSQL under READ COMMITTED is exact only when the row a statement changes or returns
decides: ``INSERT … ON CONFLICT … RETURNING``, ``DELETE … RETURNING``, ``UPDATE … WHERE <state>``
with its rowcount, or a row lock — never a read followed by a write that assumes the read still
holds). Reads named *candidates* are hints: the algorithm acts on a candidate only through a
primitive that decides exactly (``delete_wait``, ``mark_cancelled``), so a stale candidate is
harmless.

Primitives run inside the caller's verb (a savepoint or undo mark): they neither commit nor open
savepoints of their own, and a failure anywhere undoes the whole verb.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stepline.serde import dumps_exact
from stepline.store._quick_init import quick_init
from stepline.store.records import (
    EventRecord,
    HistoryRecord,
    RunEnd,
    SpentRun,
    StepRecord,
    WaitRecord,
    Wake,
)

# a wait an index lookup found (``indexed_waits``): wait id, run id, step hash, expression,
# index value, expires at, created at, step id (the wait's record without the event name and
# the path, which are the ones looked up: ``_rows.indexed_waits`` makes it); a tuple, as the
# database gives the row, since a batch of events resuming runs reads one per event
IndexedWait = tuple[str, str, str, str | None, str, float | None, float, str | None]


def indexed_wait(w: WaitRecord) -> IndexedWait:
    """The ``IndexedWait`` of an indexed wait's record."""
    return (
        w.wait_id,
        w.run_id,
        w.step_hash,
        w.expression,
        w.index_value or "",
        w.expires_at,
        w.created_at,
        w.step_id,
    )


@quick_init
@dataclass(frozen=True, slots=True)
class ResumedWait:
    """A wait an event resolved (claimed by ``delete_wait``): its step completes with
    ``event_json`` (the event's payload as JSON), its run is woken, and a WAIT_MATCHED row
    naming ``event_id`` goes to the run's history (``step_id``: the step's id when the wait
    carried it, else read from the step). ``wait_id``: the wait's (SQLite marks it resolved)."""

    run_id: str
    step_hash: str
    encoded: EventJson
    event_id: str
    step_id: str | None = None
    wait_id: str = ""

    @property
    def event_json(self) -> bytes:
        """The event's payload as JSON (encoded at the first ask, once for all its waits)."""
        return self.encoded.json()


class EventJson:
    """An event's payload as JSON, encoded when first asked for: the waits one event resolves
    share it, and a store that derives their steps' output later never asks."""

    __slots__ = ("_encoded", "_payload")

    def __init__(self, payload: Callable[[], dict[str, Any]]) -> None:
        self._payload = payload
        self._encoded: bytes | None = None

    def json(self) -> bytes:
        """The payload as JSON (``dumps_exact``)."""
        encoded = self._encoded
        if encoded is None:
            encoded = self._encoded = dumps_exact(self._payload())
        return encoded


@quick_init
@dataclass(frozen=True, slots=True)
class EndedRun:
    """What ``mark_cancelled`` returns about the run it ended."""

    function_id: str
    parent_run_id: str | None
    parent_step_hash: str | None


class RunPrimitives(Protocol):
    """Writes to runs that ended or were woken, shared by ingestion and pass commits."""

    def mark_cancelled(self, run_id: str, now: float, error: dict[str, Any]) -> EndedRun | None:
        """End the run as CANCELLED (``ended_at`` ``now``, ``error``) if it has not ended, and
        remember the lease token its queue item holds at this moment (see ``cancelled_lease``);
        None (nothing written) if the run does not exist or has ended.

        Exact: the decision is the update's own (``UPDATE runs … WHERE run_id = $1 AND status
        NOT IN (terminal) RETURNING …``): of two concurrent cancels, or a cancel and a pass
        ending the run, exactly one changes the row. The lease token is read in the same
        statement (or under a lock on the queue row), so a commit fenced on that token either
        committed before (and the cancel sees its new state) or finds the run cancelled."""
        ...

    def drop_run_work(self, run_id: str) -> None:
        """Delete the run's queue item, waits and cancel matchers, and the RUNNING marks of steps
        a pass was executing (it ended: their results never came). Idempotent."""
        ...

    def append_history(self, records: Sequence[HistoryRecord], worker_id: str | None) -> None:
        """Append ``records`` to their runs' histories in order, each row naming ``worker_id``
        as the worker (whatever the record says). Inserts only: always exact."""
        ...

    def settle_pending_step(self, wake: Wake, now: float) -> bool:
        """Settle step ``wake.step_hash`` of run ``wake.run_id`` with ``wake.status``,
        ``output_json`` and ``error`` (``ended_at`` ``now``, ``attempts`` 1) if that step is
        PENDING and its run has not ended; True if it did (the caller then wakes the run).

        Exact: one conditional update (``… WHERE status = 'PENDING' AND <run not ended>``) whose
        rowcount decides: of two concurrent settles of one step exactly one returns True."""
        ...

    def wake_run(self, run_id: str, now: float) -> None:
        """Flag the run's queue item as woken: due at ``now`` unless a pass holds its lease (the
        flag makes that pass's suspension due at once, see ``suspend_run``). Nothing when the
        run has no queue item. One update of the queue row: exact."""
        ...


class EventPrimitives(RunPrimitives, Protocol):
    """What the ingest order (``_ingest_rules``) needs, besides admission (``AdmissionTx``)."""

    def insert_events(self, events: Sequence[EventRecord], now: float) -> list[bool]:
        """Store ``events`` (received ``now``), in order; for each, True if it is new, False if
        its sender id (``event.id``) was seen in the last 24 hours (``DEDUP_WINDOW``), by an
        earlier event of the list too: the event is then stored marked duplicate. A new sender
        id is remembered as seen ``now``; an event without one is always new. ``event.data``
        and ``event.user`` are exact JSON values (checked at the edge, or built from decoded
        JSON): ``serde.dumps_exact`` encodes them. The ingest order stores a verb's events
        first, then acts on them one by one (nothing it does reads events stored after).

        Exact: the sender-id row that comes back decides — ``INSERT … ON CONFLICT (sender_id) DO
        UPDATE SET seen_at = $now WHERE event_ids.seen_at <= $now - window RETURNING``: of two
        concurrent events with one id exactly one is new."""
        ...

    def listeners(self, event_name: str) -> Sequence[tuple[str, str]]:
        """The (app id, function id) pairs of the trigger catalog (``sync_triggers``) that
        start runs on events named ``event_name``, as this transaction sees the catalog. Cheap
        when called per event: the catalog is read once per transaction at most (a version
        check), kept in memory between transactions."""
        ...

    def deliver(self, rows: Sequence[tuple[str, str, str]], now: float) -> None:
        """Add (app id, function id, event id) rows to the inbox, in order, each for the
        workers of that app having that function to take (``take_inbox``). Inserts: exact."""
        ...

    def wait_paths(self, event_name: str) -> Sequence[str]:
        """The index paths waits for ``event_name`` may be indexed under (a superset: paths may
        stay after their waits are gone). Candidates only."""
        ...

    def unindexed_waits(self, event_name: str) -> list[WaitRecord]:
        """The waits for ``event_name`` stored without an index key (candidates for every event
        of the name), expired or not. Candidates only."""
        ...

    def indexed_waits(self, event_name: str, path: str, values: Sequence[str]) -> list[IndexedWait]:
        """The waits for ``event_name`` indexed under ``path`` with any of ``values`` (one
        lookup for a whole batch of events: on a networked database one round trip), as
        ``IndexedWait`` rows. Candidates only."""
        ...

    def matcher_paths(self, event_name: str) -> Sequence[str]:
        """``wait_paths`` for the cancel matchers (``cancel_on``)."""
        ...

    def unindexed_matchers(self, event_name: str, now: float) -> list[WaitRecord]:
        """The cancel matchers for ``event_name`` without an index key, not expired at ``now``
        (``expires_at`` None or ≥ ``now``), as WaitRecords (``step_hash`` ""). Candidates."""
        ...

    def indexed_matchers(
        self, event_name: str, path: str, values: Sequence[str], now: float
    ) -> list[WaitRecord]:
        """The cancel matchers for ``event_name`` indexed under ``path`` with any of
        ``values``, not expired at ``now``. Candidates only."""
        ...

    def delete_wait(self, run_id: str, wait_id: str) -> bool:
        """Claim a wait (of run ``run_id``): True if this call deleted its row while its step
        was PENDING. A wait whose step is no longer PENDING (or not stored) is stale: its run
        moved on (the step settled otherwise, the run was copied with a resolved wait's kept
        row), and it resolves nothing: no step completed, no wake-up, no WAIT_MATCHED (False;
        its row may be deleted, SQLite keeps it for ``purge_resolved_waits``). A stale wait is
        never timed out either (``StoreTx.expire_waits``).

        Exact: ``DELETE FROM waits WHERE run_id = $1 AND wait_id = $2 RETURNING`` whether the
        step is PENDING: a wait is resolved by an event, timed out or dropped with its run by
        exactly one of them — the one that deleted the row. Everything a resolution writes
        follows a True."""
        ...

    def resume_waits(self, resumed: Sequence[ResumedWait], now: float) -> None:
        """For each resolved wait, in order: its step (if stored) becomes COMPLETED with the
        event's JSON as output (``ended_at`` ``now``), its run is woken (``wake_run``), and a
        WAIT_MATCHED row (``step_id`` of that step, data ``{"event_id": …}``, no worker) is
        appended to its history. Only ever called for waits ``delete_wait`` won."""
        ...


class PassPrimitives(EventPrimitives, Protocol):
    """What the ``commit_pass`` sequence (``_pass_rules``) needs, besides ingestion's."""

    def hold_lease(self, run_id: str, token: str) -> str | None:
        """The worker holding the run's lease if ``token`` is the lease token of its queue
        item; None otherwise (another lease, or no queue item: the run ended).

        Exact (fencing): the check holds until the transaction ends — read with ``SELECT …
        FOR UPDATE`` (or as ``UPDATE queue … WHERE run_id = $1 AND lease_token = $2``), so no
        other transaction can take the lease or delete the item between the check and the
        commit; a late pass of a paused worker finds the token changed."""
        ...

    def cancelled_lease(self, run_id: str) -> tuple[str, str | None] | None:
        """For a CANCELLED run whose queue item was leased when it was cancelled: (that lease
        token, the run's worker id); None otherwise. The run has ended: its row no longer
        changes, so a plain read is exact."""
        ...

    def put_steps(self, steps: Sequence[StepRecord]) -> None:
        """Insert or replace these memo rows (by run id and step hash). The caller holds the
        run's lease (``hold_lease``), so no other pass writes them."""
        ...

    def put_steps_if_unsettled(self, steps: Sequence[StepRecord]) -> None:
        """Insert these memo rows, or replace a stored row only if it is not settled (COMPLETED
        or FAILED). Exact: ``INSERT … ON CONFLICT DO UPDATE … WHERE status NOT IN (settled)``."""
        ...

    def insert_waits(self, waits: Sequence[WaitRecord]) -> None:
        """Store new waits, findable from now on by ``wait_paths``/``unindexed_waits``/
        ``indexed_waits`` (register their index paths). Inserts of new ids: exact."""
        ...

    def mark_running(self, run_id: str, started_at: float) -> None:
        """The run is RUNNING, started at ``started_at`` unless it already has a start time;
        its count of passes without progress is 0 (``lease_due``). Under the held lease."""
        ...

    def end_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        """End the run with terminal ``end.status``, ``output_json``, ``error``, ``ended_at``
        ``now``, ``attempt`` (unless None), ``started_at`` unless it has one. Under the held
        lease (the caller then drops its work: ``drop_run_work``)."""
        ...

    def suspend_run(self, run_id: str, end: RunEnd, started_at: float, now: float) -> None:
        """Suspend the run with ``end.status`` (``attempt`` unless None, ``started_at`` unless it
        has one; passes without progress 0) and release its queue item: unleased, due at ``now``
        if it was woken during the pass (``wake_run``), else at ``end.due_at`` (None: only a
        wake makes it due). Under the held lease; the woken flag is read in the same update
        (``due_at = CASE WHEN wake THEN $now ELSE $due END``)."""
        ...


class LeasePrimitives(RunPrimitives, Protocol):
    """What the re-entry cap at lease time (``_pass_rules.fail_spent``) needs."""

    def spent_runs(self, run_ids: Sequence[str], max_passes: int) -> list[SpentRun]:
        """The runs among ``run_ids`` (queue items the calling lease holds) leased
        ``max_passes`` times or more without a pass that made progress. Exact: the lease holds
        their queue rows (locked), and only a lease or a pass of the run changes its count."""
        ...

    def fail_run(self, run_id: str, error: dict[str, Any], now: float) -> None:
        """End the run as FAILED with ``error`` (``ended_at`` ``now``; nothing else of it
        changes). Called on a run whose queue item the caller holds: exact."""
        ...
