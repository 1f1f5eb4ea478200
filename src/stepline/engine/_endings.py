"""The ends of a pass: suspend, complete, retry the function, or fail the run.

A mixin of ``PassExecutor`` (``engine/executor.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from stepline.engine._ops import StepGate, Suspended, _Abort, error_dict
from stepline.engine._recording import encoded_result, parent_wake, retry_rows, suspension
from stepline.engine.engine import Engine
from stepline.engine.retry import retry_after_time
from stepline.errors import (
    ConfigError,
    LimitExceededError,
    NonRetriableError,
    RetryAfterError,
    SerializationError,
    StepError,
)
from stepline.sdk.function import FunctionDef
from stepline.serde import loads
from stepline.store.records import (
    EventIngest,
    HistoryRecord,
    PassCommit,
    RunEnd,
    RunRecord,
    RunState,
)


class PassEndings:
    """How a pass ends; every end is one commit."""

    engine: Engine
    fn: FunctionDef
    state: RunState
    run: RunRecord
    _deadlines: list[float]
    _suspend_kinds: set[str]
    gate: StepGate
    _finish_deadline: float | None

    if TYPE_CHECKING:  # provided by PassExecutor

        def now(self) -> float: ...

        def _new_commit(self) -> PassCommit: ...

        async def _commit(self, commit: PassCommit) -> None: ...

        async def _stop_function(
            self, task: asyncio.Future[Any], signal: type[BaseException] = Suspended
        ) -> None: ...

    async def _suspend(self, task: asyncio.Future[Any]) -> None:
        self.gate.refuse()
        commit = self._new_commit()
        deadlines = list(self._deadlines)
        if self._finish_deadline is not None:
            deadlines.append(self._finish_deadline + 0.001)
        commit.end = suspension(self._suspend_kinds, deadlines)
        await self._commit(commit)
        await self._stop_function(task)

    async def _finish(self, task: asyncio.Future[Any]) -> None:
        error = task.exception() if not task.cancelled() else None
        if error is None and not task.cancelled():
            limit = self.engine.limits.max_step_output_bytes
            try:
                output = encoded_result(self.fn.id, task.result(), limit)
            except (SerializationError, LimitExceededError) as exc:
                await self._fail_run(exc, None)
                return
            await self._complete(output)
            return
        if isinstance(error, Suspended | _Abort) or error is None:
            await self._fail_run(RuntimeError("function ended by an internal signal"), None)
            return
        # a ConfigError (a bad duration given to step.sleep...) is a mistake in the code, a
        # SerializationError (step.invoke data JSON cannot give back) one in the data: a retry
        # would raise it again
        retriable = not isinstance(
            error, NonRetriableError | StepError | ConfigError | SerializationError
        )
        attempt = self.run.attempt
        if retriable and attempt < self.fn.retries:
            now = self.now()
            retry_at = (
                retry_after_time(error, now, self.engine.backoff, attempt)
                if isinstance(error, RetryAfterError)
                else now + self.engine.backoff.delay(attempt)
            )
            commit = self._new_commit()
            history, commit.end = retry_rows(self.run, error_dict(error), retry_at, now)
            commit.history.append(history)
            await self._commit(commit)
            return
        await self._fail_run(error, None)

    def _ending_events(self, status: str, **details: Any) -> list[EventIngest]:
        """The system events this run's end emits (see ``_system_events``)."""
        events = [e.payload() for e in self.state.events]
        return self.engine.ending_events(
            self.fn.id, self.run.run_id, events, status, self.now(), **details
        )

    async def _complete(self, output: bytes) -> None:
        commit = self._new_commit()
        now = self.now()
        commit.end = RunEnd(status="COMPLETED", output_json=output)
        commit.history.append(HistoryRecord(self.run.run_id, now, "RUN_COMPLETED"))
        commit.events.extend(self._ending_events("COMPLETED", result=loads(output)))
        self._wake_parent(commit, "COMPLETED", output, None)
        await self._commit(commit)

    async def _fail_run(
        self,
        error: BaseException,
        task: asyncio.Future[Any] | None,
        commit: PassCommit | None = None,
        *,
        announce: bool = True,
    ) -> None:
        """Fail the run for good with ``error`` (in ``commit``, by default the pass's next one,
        with the results it buffered); ``announce``: emit the system events."""
        self.gate.refuse(_Abort)
        commit = self._new_commit() if commit is None else commit
        now = self.now()
        details = error_dict(error)
        if isinstance(error, LimitExceededError):
            details["limit"] = error.limit
        commit.end = RunEnd(status="FAILED", error=details)
        commit.history.append(HistoryRecord(self.run.run_id, now, "RUN_FAILED", data=details))
        if announce:
            failure = {"name": details["name"], "message": details["message"]}
            commit.events.extend(self._ending_events("FAILED", error=failure))
        self._wake_parent(commit, "FAILED", None, details)
        await self._commit(commit)
        if task is not None:
            await self._stop_function(task, _Abort)

    def _wake_parent(
        self, commit: PassCommit, status: str, output: bytes | None, error: dict[str, Any] | None
    ) -> None:
        wake = parent_wake(self.run, status, output, error)
        if wake is not None:
            commit.wakes.append(wake)
