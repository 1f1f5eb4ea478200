"""Read-only views of runs and their steps, as the public API returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stepline.serde import loads
from stepline.store.records import (
    TERMINAL_STATUSES,
    EventRunRecord,
    HistoryRecord,
    RunRecord,
    StepRecord,
    WorkerRecord,
)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class StepInfo:
    """One step of a run: ``id`` (with its occurrence suffix), ``kind``, ``status``
    (COMPLETED | FAILED | PENDING | RETRYING, or RUNNING while an attempt executes), ``attempts``
    made (before the one RUNNING), ``output`` or ``error``, when its latest attempt
    ``started_at`` and ``ended_at``."""

    id: str
    kind: str
    status: str
    attempts: int
    output: Any
    error: dict[str, Any] | None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def queued(self) -> bool:
        """A step planned but not started: a step of an SDK run that a pass cut by its
        request limit planned and left for the next pass (PENDING, of kind ``run``, never
        started); shown as QUEUED, as Inngest shows a planned step."""
        return self.status == "PENDING" and self.kind == "run" and self.started_at is None

    @classmethod
    def from_record(cls, record: StepRecord) -> StepInfo:
        """Build from a store row."""
        return cls(
            record.step_id,
            record.kind,
            record.status,
            record.attempts,
            loads(record.output_json),
            record.error,
            _dt(record.started_at),
            _dt(record.ended_at),
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a run's history: ``at`` when it happened (a step attempt: when it ended,
    ``duration`` after it started), and the worker whose pass wrote it (None for what a sender
    or the API did)."""

    at: datetime
    kind: str
    step_id: str | None
    attempt: int | None
    duration: float | None
    data: dict[str, Any] | None
    worker_id: str | None = None

    @classmethod
    def from_record(cls, record: HistoryRecord) -> HistoryEntry:
        """Build from a store row."""
        at = datetime.fromtimestamp(record.ts, UTC)
        return cls(
            at,
            record.kind,
            record.step_id,
            record.attempt,
            record.duration,
            record.data,
            record.worker_id,
        )


@dataclass(frozen=True)
class Run:
    """A run: its status (QUEUED | RUNNING | SLEEPING | WAITING | RETRYING | COMPLETED | FAILED |
    CANCELLED), ``output`` once COMPLETED, ``error`` once FAILED or CANCELLED, and its steps in
    execution order. ``app_id`` is the app whose function it runs, ``worker_id`` the worker
    that leased its latest pass; ``waiting_for_worker`` is True while it has not ended and no
    live worker has registered its function (it waits for one; it is never failed for that).
    ``cursor`` is its exact position in a runs list: ``App.runs(after=run.cursor)`` gives the
    page after it."""

    run_id: str
    function_id: str
    status: str
    output: Any
    error: dict[str, Any] | None
    event_ids: list[str]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    attempt: int
    steps: list[StepInfo]
    app_id: str = ""
    worker_id: str | None = None
    waiting_for_worker: bool = False
    cursor: tuple[float, str] | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the run has ended (COMPLETED, FAILED or CANCELLED)."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_records(
        cls, run: RunRecord, steps: list[StepRecord], workers: list[WorkerRecord] | None = None
    ) -> Run:
        """Build from store rows (``workers``: the live ones, to tell whether it waits for
        one; without them it is not said to)."""
        created = datetime.fromtimestamp(run.created_at, UTC)
        return cls(
            run_id=run.run_id,
            function_id=run.function_id,
            status=run.status,
            output=loads(run.output_json),
            error=run.error,
            event_ids=list(run.event_ids),
            created_at=created,
            started_at=_dt(run.started_at),
            ended_at=_dt(run.ended_at),
            attempt=run.attempt,
            steps=[StepInfo.from_record(s) for s in steps],
            app_id=run.app_id,
            worker_id=run.worker_id,
            waiting_for_worker=workers is not None and waits_for_worker(run, workers),
            cursor=(run.created_at, run.run_id),
        )


@dataclass(frozen=True)
class EventRun:
    """A run an event acted on (``App.event_runs``), and how: ``effect`` is "started" (the
    event triggered it, alone or with others in a batch or a debounce, or it is a replay of
    such a run), "resumed" (the event resolved one of its ``wait_for_event`` steps) or
    "cancelled" (the event matched its ``cancel_on``, or started a singleton run that replaced
    it). ``run`` is read without its steps."""

    effect: str
    run: Run

    @classmethod
    def from_record(cls, record: EventRunRecord) -> EventRun:
        """Build from a store row."""
        return cls(record.effect, Run.from_records(record.run, []))


def waits_for_worker(run: RunRecord, workers: list[WorkerRecord]) -> bool:
    """Whether a run that has not ended has no live worker with its function."""
    if run.status in TERMINAL_STATUSES:
        return False
    return not any(
        run.function_id in w.function_ids and run.app_id in (w.app_id, "") for w in workers
    )
