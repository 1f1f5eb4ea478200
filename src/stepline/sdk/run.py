"""Read-only views of runs and their steps, as the public API returns them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stepline.serde import loads
from stepline.store.records import TERMINAL_STATUSES, HistoryRecord, RunRecord, StepRecord


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class StepInfo:
    """One step of a run: ``id`` (with its occurrence suffix), ``kind``, ``status``
    (COMPLETED | FAILED | PENDING | RETRYING), ``attempts`` made, ``output`` or ``error``."""

    id: str
    kind: str
    status: str
    attempts: int
    output: Any
    error: dict[str, Any] | None

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
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a run's history."""

    at: datetime
    kind: str
    step_id: str | None
    attempt: int | None
    duration: float | None
    data: dict[str, Any] | None

    @classmethod
    def from_record(cls, record: HistoryRecord) -> HistoryEntry:
        """Build from a store row."""
        at = datetime.fromtimestamp(record.ts, UTC)
        return cls(at, record.kind, record.step_id, record.attempt, record.duration, record.data)


@dataclass(frozen=True)
class Run:
    """A run: its status (QUEUED | RUNNING | SLEEPING | WAITING | RETRYING | COMPLETED | FAILED |
    CANCELLED), ``output`` once COMPLETED, ``error`` once FAILED or CANCELLED, and its steps in
    execution order."""

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

    @property
    def done(self) -> bool:
        """Whether the run has ended (COMPLETED, FAILED or CANCELLED)."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_records(cls, run: RunRecord, steps: list[StepRecord]) -> Run:
        """Build from store rows."""
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
        )
