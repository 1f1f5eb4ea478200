"""A round of a pass: the operations registered since the last round become one commit.

A mixin of ``PassExecutor`` (``engine/executor.py``): the step results, pending sleeps, waits and
invokes, and sent events of a round are recorded here; the executor drives rounds and commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from stepline.engine._executing import ExecutingSteps
from stepline.engine._ops import _Abort, _Op, _Outcome, error_dict
from stepline.engine._recording import invoke_rows, wait_rows
from stepline.engine._step_attempt import attempt_step, recorded
from stepline.engine.driver import commit_pass
from stepline.engine.engine import Engine
from stepline.errors import LimitExceededError, StepError
from stepline.sdk.function import FunctionDef
from stepline.serde import dumps, loads
from stepline.store.records import (
    HistoryRecord,
    Lease,
    PassCommit,
    RunRecord,
    RunState,
    StepRecord,
)


@dataclass(frozen=True)
class _Mark:
    """How far a commit's lists reached: what recording one operation added can be undone."""

    sizes: tuple[int, ...]

    @staticmethod
    def of(commit: PassCommit) -> _Mark:
        return _Mark(tuple(len(part) for part in _parts(commit)))

    def restore(self, commit: PassCommit) -> None:
        for part, size in zip(_parts(commit), self.sizes, strict=True):
            del part[size:]


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """A step call's result (or error) given to its caller, unless it stopped waiting."""
    if future.done():  # its caller stopped waiting: committed all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _parts(commit: PassCommit) -> tuple[list[Any], ...]:
    return (commit.steps, commit.history, commit.waits, commit.events, commit.child_runs)


class RoundRecorder:
    """Records a round's operations into a ``PassCommit`` and resolves them after it commits."""

    engine: Engine
    fn: FunctionDef
    state: RunState
    run: RunRecord
    lease: Lease
    loop: asyncio.AbstractEventLoop
    _late_steps: list[StepRecord]
    _late_history: list[HistoryRecord]
    _buffer: PassCommit | None
    _buffered: int
    _buffer_since: float | None
    memo: dict[str, StepRecord]
    _blocked: list[asyncio.Future[Any]]
    _consumed: set[str]
    _memo_done: set[str]
    _deadlines: list[float]
    _suspend_kinds: set[str]
    _abort: LimitExceededError | None
    _determined: bool
    _next_position: int
    _state_bytes: int
    executing: ExecutingSteps

    if TYPE_CHECKING:  # provided by PassExecutor

        def now(self) -> float: ...

        def _new_commit(self, take_buffer: bool = True) -> PassCommit: ...

        def _take_buffer(self, commit: PassCommit) -> None: ...

        async def _wait_flushing(self, waitables: set[asyncio.Future[Any]]) -> None: ...

        async def _commit(
            self, commit: PassCommit, then: Callable[[], object] | None = None
        ) -> None: ...

        async def _attempt(self, op: _Op) -> _Outcome: ...

        def _release_ops(self, ops: list[_Op], error: BaseException) -> None: ...

    def _check_determinism(self, ops: list[_Op], commit: PassCommit) -> None:
        """Warn (once a pass, in ``commit``'s history) if the function asks for new steps
        before reaching memoized ones. Called at each round until it warned or found every
        memoized step reached (``_determined``): that stays so for the pass, since a step is
        added to ``_memo_done`` after the function started only with ``_consumed`` (a step
        failed for good), so later rounds skip the set difference (a replayed pass's
        rounds each took one the size of its memo)."""
        if self._determined:
            return
        unvisited = self._memo_done - self._consumed
        self._determined = True  # warned now, or nothing left to find this pass
        if unvisited:
            names = sorted(self.memo[h].step_id for h in unvisited)
            commit.history.append(
                HistoryRecord(
                    self.run.run_id,
                    self.now(),
                    "WARNING",
                    ops[0].key,
                    data={
                        "message": "non-deterministic function: it asked for new step "
                        f"{ops[0].key!r} before reaching memoized steps {names}",
                    },
                )
            )

    def _record(
        self,
        op: _Op,
        status: str,
        *,
        output_json: bytes | None = None,
        error: dict[str, Any] | None = None,
        attempts: int = 0,
        due_at: float | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
    ) -> StepRecord:
        """``op``'s memo row, now ``status`` (at its own position, or the next one if new)."""
        memo = self.memo
        existing = memo.get(op.hash)
        if existing is not None:
            position = existing.position
        else:
            position = self._next_position
            self._next_position = position + 1
        # positional: no dict of keywords made and unpacked a step
        record = StepRecord(
            self.run.run_id,
            op.hash,
            op.key,
            op.kind,
            position,
            status,
            output_json,
            error,
            attempts,
            due_at,
            started_at,
            ended_at,
        )
        memo[op.hash] = record
        return record

    async def _run_round(self, ops: list[_Op]) -> None:
        commit = self._new_commit(take_buffer=False)  # buffered results may flush meanwhile
        self._check_determinism(ops, commit)
        now = self.now()
        run_ops = [op for op in ops if op.kind == "run"]
        if run_ops:  # the rows are built only if the round is still executing then
            self.executing.show_later(run_ops, self._next_position, now)
        try:
            outcomes = await self._attempts(run_ops)
        finally:
            if run_ops:
                self.executing.done()
        buffered = self._buffer  # results of earlier rounds held (Checkpointing): counted
        self._take_buffer(commit)
        resolutions: list[tuple[_Op, Any, BaseException | None]] = []
        for op, outcome in zip(run_ops, outcomes, strict=True):
            self._settle_run_op(op, outcome, commit, resolutions)
        for op in ops:
            if op.kind != "run":
                self._settle_other(op, commit, resolutions, now)
        if self._abort is None:  # this round's outputs (the buffered ones were counted)
            held = 0 if buffered is None else len(buffered.steps)
            added = sum(len(s.output_json or b"") for s in commit.steps[held:])
            if self._state_bytes + added > self.engine.limits.max_run_state_bytes:
                self._abort = LimitExceededError(
                    "run_state",
                    f"run {self.run.run_id} state would be {self._state_bytes + added} bytes, over "
                    f"the limit of {self.engine.limits.max_run_state_bytes}",
                )
            self._state_bytes += added
        if self._abort is not None:
            # what earlier rounds buffered ran and was given to the function: committed with
            # the run's failure (``_fail_run``), as without Checkpointing; this round's is not
            self._buffer = buffered
            self._release_ops(ops, _Abort())
            return
        resolved = False
        failed: list[Exception] = []  # raised here, not in the writer's delivery

        def resolve() -> None:  # the steps' callers continue (with their results, or errors)
            nonlocal resolved
            resolved = True
            try:
                for op, value, error in resolutions:
                    if op.future.done():  # its caller stopped waiting: committed all the same
                        continue
                    if error is not None:
                        op.future.set_exception(error)
                    else:
                        op.future.set_result(value)
            except Exception as exc:  # a step call's future cancelled meanwhile
                failed.append(exc)

        if self._keep_buffered(ops, commit, resolutions, now):
            self._buffer = commit  # results acknowledged before their commit (Checkpointing)
        else:
            self._buffered = 0
            self._buffer_since = None
            # resolved as the commit is delivered: the function continues at the loop's next
            # turn, ahead of this task (which then finds its next step registered), not a
            # turn after it
            await self._commit(commit, resolve)
        if not resolved:
            resolve()
        if failed:
            raise failed[0]

    async def _lone_round(self, op: _Op) -> None:
        """``_run_round`` for its usual case: a round of one ``run`` step, with no Checkpointing
        (nothing buffered, nothing kept for later). The same records, checks and commit as
        ``_run_round`` makes for it, without the general round's lists and closures; its caller
        continues as its commit is delivered, as there."""
        if self._late_steps or self._late_history:
            commit = self._new_commit(take_buffer=False)
        else:  # _new_commit's, without the calls: nothing buffered, nothing late
            commit = PassCommit(self.run.run_id, self.lease.token)
        if not self._determined:
            self._check_determinism([op], commit)
        now = self.now()
        executing = self.executing
        executing.show_later((op,), self._next_position, now)
        try:
            outcome = await attempt_step(self.engine, self.loop, self.fn.retries, op, False)
        finally:
            executing.done()
        record = recorded(self.engine, outcome)  # counted while the commit is in flight
        resolutions: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            self._settle_run_op(op, outcome, commit, resolutions)
        except BaseException:
            record()
            raise
        if self._abort is None:
            added = 0
            for step in commit.steps:
                output = step.output_json
                if output is not None:
                    added += len(output)
            limit = self.engine.limits.max_run_state_bytes
            if self._state_bytes + added > limit:
                self._abort = LimitExceededError(
                    "run_state",
                    f"run {self.run.run_id} state would be {self._state_bytes + added} bytes, "
                    f"over the limit of {limit}",
                )
            self._state_bytes += added
        if self._abort is not None:
            record()
            self._release_ops([op], _Abort())
            return
        if not resolutions:  # to be retried: the step call stays blocked, the pass suspends
            await commit_pass(self.engine, commit, self.now(), None, self.loop, record)
            return
        _, value, error = resolutions[0]
        future = op.future
        # resolved as the commit is delivered (see _run_round), or here if it was not then
        then = partial(_resolve, future, value, error)
        await commit_pass(self.engine, commit, self.now(), then, self.loop, record)
        if not future.done():
            _resolve(future, value, error)

    async def _attempts(self, run_ops: list[_Op]) -> list[_Outcome]:
        """Execute one attempt of each ``run`` step, concurrently; committing buffered results
        if ``max_interval`` passes meanwhile."""
        if not run_ops:
            return []
        if len(run_ops) == 1 and self._buffer is None:
            return [await self._attempt(run_ops[0])]
        gathered = asyncio.ensure_future(asyncio.gather(*(self._attempt(op) for op in run_ops)))
        try:
            await self._wait_flushing({gathered})
            return list(await gathered)
        finally:
            if not gathered.done():
                gathered.cancel()

    def _keep_buffered(
        self,
        ops: list[_Op],
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
        now: float,
    ) -> bool:
        """With ``Checkpointing``: whether this round's results (and those buffered before,
        already in ``commit``) may wait for a later commit. Only rounds of steps that all
        succeeded are buffered, up to ``buffered_steps`` results or ``max_interval``."""
        checkpointing = self.fn.options.checkpointing
        if checkpointing is None or not checkpointing.buffers:
            return False
        succeeded = len(resolutions) == len(ops) and all(e is None for _, _, e in resolutions)
        effects = commit.waits or commit.events or commit.child_runs or commit.wakes
        if not succeeded or effects or any(op.kind != "run" for op in ops):
            return False
        self._buffered += len(ops)
        if self._buffer_since is None:
            self._buffer_since = now
        interval = checkpointing.max_interval_seconds
        return self._buffered < checkpointing.buffered_steps and (
            interval is None or now - self._buffer_since < interval
        )

    def _settle_run_op(
        self,
        op: _Op,
        outcome: _Outcome,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
    ) -> None:
        attempt = op.attempts
        history = HistoryRecord(  # at the step's end (``duration`` after its start)
            self.run.run_id,
            outcome.ended_at,
            "STEP_COMPLETED",
            op.key,
            attempt,
            outcome.duration,
        )
        if outcome.error is None:
            commit.steps.append(
                self._record(
                    op,
                    "COMPLETED",
                    output_json=outcome.output_json,
                    attempts=attempt + 1,
                    started_at=outcome.started_at,
                    ended_at=outcome.ended_at,
                )
            )
            commit.history.append(history)
            resolutions.append((op, loads(outcome.output_json), None))
            return
        error = error_dict(outcome.error)
        if isinstance(outcome.error, LimitExceededError):
            self._abort = outcome.error
            return
        if outcome.retry_at is not None:
            commit.steps.append(
                self._record(
                    op, "RETRYING", error=error, attempts=attempt + 1, due_at=outcome.retry_at
                )
            )
            commit.history.append(
                HistoryRecord(
                    self.run.run_id,
                    outcome.ended_at,
                    "STEP_FAILED",
                    op.key,
                    attempt,
                    outcome.duration,
                    {"error": error, "retry_at": outcome.retry_at},
                )
            )
            self._deadlines.append(outcome.retry_at)
            self._suspend_kinds.add("retry")
            self._blocked.append(op.future)
            return
        self._fail_for_good(
            op, commit, resolutions, error, attempt, outcome.ended_at, outcome.duration
        )

    def _fail_for_good(
        self,
        op: _Op,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
        error: dict[str, Any],
        attempt: int,
        ended_at: float,
        duration: float,
    ) -> None:
        """Record ``op`` as failed for good after ``attempt`` (0-based) and raise ``StepError``
        into the function at that step."""
        commit.steps.append(self._record(op, "FAILED", error=error, attempts=attempt + 1))
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                ended_at,
                "STEP_FAILED",
                op.key,
                attempt,
                duration,
                {"error": error, "final": True},
            )
        )
        self._memo_done.add(op.hash)
        self._consumed.add(op.hash)
        resolutions.append((op, None, StepError(op.key, error["name"], error["message"])))

    def _settle_other(
        self,
        op: _Op,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
        now: float,
    ) -> None:
        """Record a sleep, wait, invoke or send. An error the engine raises doing it (an event
        over the size limit, a wait expression it cannot prepare) concerns this step alone: it
        is the step's failure, for good (the same input would fail again), raised into the
        function at this step as ``StepError``."""
        mark = _Mark.of(commit)
        try:
            if op.kind == "sleep":
                self._settle_sleep(op, commit, resolutions, now)
            elif op.kind == "wait":
                self._settle_wait(op, commit, now)
            elif op.kind == "invoke":
                self._settle_invoke(op, commit, resolutions, now)
            elif op.kind == "send":
                self._settle_send(op, commit, resolutions, now)
        except Exception as exc:
            mark.restore(commit)
            self._fail_for_good(op, commit, resolutions, error_dict(exc), 0, now, 0.0)

    def _settle_sleep(
        self,
        op: _Op,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
        now: float,
    ) -> None:
        assert op.due_at is not None
        if op.due_at <= now:
            commit.steps.append(
                self._record(op, "COMPLETED", output_json=b"null", started_at=now, ended_at=now)
            )
            resolutions.append((op, None, None))
            return
        commit.steps.append(self._record(op, "PENDING", due_at=op.due_at, started_at=now))
        commit.history.append(
            HistoryRecord(self.run.run_id, now, "SLEEP", op.key, data={"until": op.due_at})
        )
        self._deadlines.append(op.due_at)
        self._suspend_kinds.add("sleep")
        self._blocked.append(op.future)

    def _settle_wait(self, op: _Op, commit: PassCommit, now: float) -> None:
        assert op.event_name is not None
        trigger = self.state.events[0].payload() if self.state.events else {}
        wait, history = wait_rows(
            self.run.run_id, op.hash, op.key, op.event_name, op.expression, op.due_at, trigger, now
        )
        commit.steps.append(self._record(op, "PENDING", due_at=op.due_at, started_at=now))
        commit.waits.append(wait)
        commit.history.append(history)
        if op.due_at is not None:
            self._deadlines.append(op.due_at)
        self._suspend_kinds.add("wait")
        self._blocked.append(op.future)

    def _settle_invoke(
        self,
        op: _Op,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
        now: float,
    ) -> None:
        assert op.function_id is not None
        fn = self.engine.invoke_target(op.function_id)
        if fn is None:
            error = {"name": "FunctionNotFound", "message": f"no function {op.function_id!r}"}
            commit.steps.append(self._record(op, "FAILED", error=error, attempts=1))
            commit.history.append(
                HistoryRecord(self.run.run_id, now, "STEP_FAILED", op.key, 0, 0.0, {"error": error})
            )
            self._memo_done.add(op.hash)
            self._consumed.add(op.hash)
            resolutions.append((op, None, StepError(op.key, error["name"], error["message"])))
            return
        # admitted as any run of the function (the store applies it; a skip fails this step):
        # Inngest schedules an invoke event as any event (runner.go Initialize). Not debounced
        # or batched (docs/inngest.md).
        event, child, history = invoke_rows(
            self.engine,
            fn,
            self.run,
            op.hash,
            op.key,
            op.function_id,
            op.data or {},
            now,
            due_at=op.due_at,
            user=op.user,
            v=op.v,
        )
        commit.events.append(event)
        commit.child_runs.append(child)
        commit.steps.append(self._record(op, "PENDING", started_at=now, due_at=op.due_at))
        commit.history.append(history)
        if op.due_at is not None:  # invoke(timeout=): wake up then to fail the step
            self._deadlines.append(op.due_at)
        self._suspend_kinds.add("invoke")
        self._blocked.append(op.future)

    def _settle_send(
        self,
        op: _Op,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
        now: float,
    ) -> None:
        records = [self.engine.event_record(e, now) for e in op.events or []]
        commit.events.extend([self.engine.plan(r) for r in records])
        ids = [r.internal_id for r in records]
        output = dumps(ids)
        commit.steps.append(
            self._record(op, "COMPLETED", output_json=output, started_at=now, ended_at=now)
        )
        commit.history.append(
            HistoryRecord(self.run.run_id, now, "SEND_EVENT", op.key, data={"event_ids": ids})
        )
        resolutions.append((op, ids, None))
