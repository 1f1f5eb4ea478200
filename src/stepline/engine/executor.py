"""One pass over one run: replay the memo, execute new steps, commit, suspend or finish.

The function runs as a task (async) or in a thread (sync). Each step call registers an ``_Op``
and awaits its future. When every branch of the function is blocked on a step, the pass takes the
operations registered since the last round in registration order (deterministic on replay),
executes the ``run`` steps concurrently, persists everything in one commit and only then resolves
the futures, so the function continues in the same pass. Sleeps, waits and invokes are persisted
as pending steps; once nothing else can progress the pass commits the run's next wake-up and
raises ``Suspended`` (a BaseException user code does not catch) into the blocked calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from stepline._ids import new_id
from stepline.engine.engine import FUNCTION_FAILED, FUNCTION_FINISHED, FUNCTION_INVOKED, Engine
from stepline.engine.retry import backoff_delay, retry_after_time
from stepline.errors import (
    LeaseLostError,
    LimitExceededError,
    NonRetriableError,
    RetryAfterError,
    SerializationError,
    StepError,
)
from stepline.expressions import prepare_match
from stepline.sdk.context import Context, ReplayAwareLogger, SyncContext
from stepline.sdk.event import Event
from stepline.sdk.function import FunctionDef
from stepline.sdk.step import Step, SyncStep
from stepline.serde import dumps, loads
from stepline.store.interface import StoreTx
from stepline.store.records import (
    EventIngest,
    EventRecord,
    HistoryRecord,
    Lease,
    NewRun,
    PassCommit,
    RunEnd,
    RunState,
    StepRecord,
    WaitRecord,
    Wake,
)


class Suspended(BaseException):
    """Raised into a blocked step call when the run suspends; never catch it."""


class _Abort(BaseException):
    """Raised into the function when the run must fail at once (a limit was breached)."""


def step_hash(key: str) -> str:
    """The memo key of a step occurrence (``"fetch"``, ``"fetch:1"``…)."""
    return hashlib.sha1(key.encode()).hexdigest()


def error_dict(exc: BaseException) -> dict[str, Any]:
    """How an error is stored: name, message, stack."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"name": type(exc).__name__, "message": str(exc), "stack": stack[-8000:]}


@dataclass(eq=False)
class _Op:
    kind: str
    step_id: str
    key: str
    hash: str
    future: asyncio.Future[Any]
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    due_at: float | None = None
    event_name: str | None = None
    expression: str | None = None
    function_id: str | None = None
    data: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    events: list[Event] | None = None


@dataclass
class _Outcome:
    output_json: bytes | None = None
    error: BaseException | None = None
    retry_at: float | None = None
    final: bool = False
    started_at: float = 0.0
    duration: float = 0.0


class PassExecutor:
    """Drives one leased run for one pass. Implements ``StepDriver`` for the function's steps."""

    def __init__(self, engine: Engine, lease: Lease, state: RunState, fn: FunctionDef) -> None:
        self.engine = engine
        self.lease = lease
        self.state = state
        self.fn = fn
        self.run = state.run
        self.loop = asyncio.get_running_loop()
        self.memo: dict[str, StepRecord] = state.steps
        self._counts: Counter[str] = Counter()
        self._new_ops: list[_Op] = []
        self._blocked: list[asyncio.Future[Any]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._consumed: set[str] = set()
        self._memo_done = {h for h, s in self.memo.items() if s.status in ("COMPLETED", "FAILED")}
        self._memo_at_load = set(self.memo)
        self._deadlines: list[float] = []
        self._suspend_kinds: set[str] = set()
        self._late_steps: list[StepRecord] = []
        self._abort: LimitExceededError | None = None
        self._suspending = False
        self._warned = False
        self._next_position = max((s.position for s in self.memo.values()), default=-1) + 1
        self._new_ops_seen = False
        self._start_recorded = False
        self._state_bytes = sum(len(s.output_json or b"") for s in self.memo.values())
        self._state_bytes += sum(len(dumps(e.data)) for e in state.events)
        started = self.run.started_at if self.run.started_at is not None else self.now()
        self._finish_deadline = (
            started + self.run.finish_timeout if self.run.finish_timeout is not None else None
        )
        self.ctx = self._make_context()

    # -- StepDriver -------------------------------------------------------------------------------
    def now(self) -> float:
        return self.engine.clock.now()

    @property
    def replaying(self) -> bool:
        """True while the function re-executes code it already ran: memo rows (of any status)
        remain unreached and it has not asked for a new step yet."""
        return bool(self._memo_at_load - self._consumed) and not self._new_ops_seen

    async def step_run(
        self, step_id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return await self._request("run", step_id, fn=fn, args=args, kwargs=kwargs)

    async def step_sleep_until(self, step_id: str, due_at: float) -> None:
        await self._request("sleep", step_id, due_at=due_at)

    async def step_wait(
        self, step_id: str, event: str, expression: str | None, timeout: float
    ) -> Event | None:
        result = await self._request(
            "wait", step_id, event_name=event, expression=expression, due_at=self.now() + timeout
        )
        return None if result is None else Event.from_payload(result)

    async def step_invoke(
        self, step_id: str, function_id: str, data: dict[str, Any], user: dict[str, Any]
    ) -> Any:
        return await self._request("invoke", step_id, function_id=function_id, data=data, user=user)

    async def step_send(self, step_id: str, events: list[Event]) -> list[str]:
        result: list[str] = await self._request("send", step_id, events=events)
        return result

    # -- registering operations -------------------------------------------------------------------
    async def _request(self, kind: str, step_id: str, **spec: Any) -> Any:
        if self._suspending:
            raise Suspended()
        n = self._counts[step_id]
        self._counts[step_id] += 1
        key = step_id if n == 0 else f"{step_id}:{n}"
        digest = step_hash(key)
        memo = self.memo.get(digest)
        if memo is not None:
            self._consumed.add(digest)
            if memo.status == "COMPLETED":
                return loads(memo.output_json)
            if memo.status == "FAILED":
                error = memo.error or {}
                raise StepError(key, error.get("name", "Error"), error.get("message", ""))
            if memo.status == "PENDING":
                if memo.kind == "sleep" and memo.due_at is not None and memo.due_at <= self.now():
                    memo.status, memo.ended_at = "COMPLETED", self.now()
                    memo.output_json = b"null"
                    self._late_steps.append(memo)
                    return None
                if memo.due_at is not None:
                    self._deadlines.append(memo.due_at)
                self._suspend_kinds.add(memo.kind)
                return await self._block()
            if memo.status == "RETRYING" and memo.due_at is not None and memo.due_at > self.now():
                # woken early (a parallel wait matched, say): the retry keeps its backoff
                self._deadlines.append(memo.due_at)
                self._suspend_kinds.add("retry")
                return await self._block()
        if len(self.memo) + len(self._new_ops) >= self.engine.limits.max_steps:
            self._abort = LimitExceededError(
                "steps",
                f"run {self.run.run_id} asked for step {key!r} beyond the limit of "
                f"{self.engine.limits.max_steps} steps per run",
            )
            self._notify()
            raise _Abort()
        self._new_ops_seen = True
        op = _Op(kind, step_id, key, digest, self.loop.create_future(), **spec)
        if memo is not None and memo.status == "RETRYING":
            op.attempts = memo.attempts
        self._new_ops.append(op)
        self._notify()
        return await op.future

    def _notify(self) -> None:
        """Wake ``_settle``: an operation was registered (or the run must abort)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _block(self) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        self._blocked.append(future)
        self._notify()
        return await future

    # -- the pass ---------------------------------------------------------------------------------
    def _make_context(self) -> Context | SyncContext:
        events = [Event.from_payload(e.payload()) for e in self.state.events]
        step = Step(self)
        logger = ReplayAwareLogger(
            self.engine.logger,
            {"run_id": self.run.run_id, "function_id": self.fn.id},
            lambda: self.replaying,
        )
        attempt = max(
            [self.run.attempt] + [s.attempts for s in self.memo.values() if s.status == "RETRYING"]
        )
        fields: dict[str, Any] = {
            "event": events[0] if events else Event(name="", data={}),
            "events": events,
            "run_id": self.run.run_id,
            "function_id": self.fn.id,
            "logger": logger,
            "attempt": attempt,
        }
        if self.fn.is_async:
            return Context(step=step, **fields)
        return SyncContext(step=SyncStep(step, self.loop), **fields)

    async def execute(self) -> None:
        """Run the pass to its end (suspended, finished, failed or cancelled by a timeout)."""
        reason = self._timed_out(at_start=True)
        if reason is not None:
            await self._cancel(reason)
            return
        if any(w.expires_at is not None and w.expires_at <= self.now() for w in self.state.waits):
            expired = await self.engine.writer.write(
                lambda tx: tx.expire_waits(self.run.run_id, self.lease.token, self.now())
            )
            for digest in expired:
                step = self.memo.get(digest)
                if step is not None:
                    step.status, step.output_json = "COMPLETED", b"null"
                    self._memo_done.add(digest)
        task = self._start_function()
        try:
            await self._drive(task)
        finally:
            if not task.done():
                self._release_blocked(Suspended())
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _start_function(self) -> asyncio.Future[Any]:
        handler = self.fn.handler
        if self.fn.is_async:
            return self.loop.create_task(handler(self.ctx))
        return self.loop.run_in_executor(self.engine.function_threads, handler, self.ctx)

    async def _drive(self, task: asyncio.Future[Any]) -> None:
        while True:
            await self._settle(task)
            if self._abort is not None:
                await self._fail_run(self._abort, task)
                return
            reason = self._timed_out()
            if reason is not None:
                await self._cancel(reason)
                self._release_blocked(Suspended())
                self._release_ops(self._new_ops, Suspended())
                await self._wait_out(task)
                return
            if self._new_ops:
                ops, self._new_ops = self._new_ops, []
                await self._run_round(ops)
                continue
            if task.done():
                await self._finish(task)
                return
            await self._suspend(task)
            return

    async def _settle(self, task: asyncio.Future[Any]) -> None:
        """Wait until the function is done or every branch waits on a step."""
        while True:
            if task.done() or self._abort is not None:
                return
            if self._new_ops or self._blocked:
                last, stable = (-1, -1), 0
                while stable < 2:
                    await asyncio.sleep(0)
                    counts = (len(self._new_ops), len(self._blocked))
                    stable = stable + 1 if counts == last else 0
                    last = counts
                    if task.done():
                        return
                return
            waiter = self._waiter = self.loop.create_future()
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            self._waiter = None

    # -- a round of new operations ----------------------------------------------------------------
    def _check_determinism(self, ops: list[_Op], commit: PassCommit) -> None:
        unvisited = self._memo_done - self._consumed
        if unvisited and not self._warned:
            self._warned = True
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

    def _record(self, op: _Op, status: str, **values: Any) -> StepRecord:
        existing = self.memo.get(op.hash)
        position = existing.position if existing is not None else self._next_position
        if existing is None:
            self._next_position += 1
        record = StepRecord(
            run_id=self.run.run_id,
            hash=op.hash,
            step_id=op.key,
            kind=op.kind,
            position=position,
            status=status,
            **values,
        )
        self.memo[op.hash] = record
        return record

    async def _run_round(self, ops: list[_Op]) -> None:
        commit = self._new_commit()
        self._check_determinism(ops, commit)
        now = self.now()
        run_ops = [op for op in ops if op.kind == "run"]
        if len(run_ops) == 1:
            outcomes = [await self._attempt(run_ops[0])]
        else:
            outcomes = list(await asyncio.gather(*(self._attempt(op) for op in run_ops)))
        resolutions: list[tuple[_Op, Any, BaseException | None]] = []
        for op, outcome in zip(run_ops, outcomes, strict=True):
            self._settle_run_op(op, outcome, commit, resolutions)
        for op in ops:
            if op.kind == "sleep":
                self._settle_sleep(op, commit, resolutions, now)
            elif op.kind == "wait":
                self._settle_wait(op, commit, now)
            elif op.kind == "invoke":
                self._settle_invoke(op, commit, resolutions, now)
            elif op.kind == "send":
                self._settle_send(op, commit, resolutions, now)
        if self._abort is None:
            added = sum(len(s.output_json or b"") for s in commit.steps)
            if self._state_bytes + added > self.engine.limits.max_run_state_bytes:
                self._abort = LimitExceededError(
                    "run_state",
                    f"run {self.run.run_id} state would be {self._state_bytes + added} bytes, over "
                    f"the limit of {self.engine.limits.max_run_state_bytes}",
                )
            self._state_bytes += added
        if self._abort is not None:
            self._release_ops(ops, _Abort())
            return
        await self._commit(commit)
        for op, value, error in resolutions:
            if error is not None:
                op.future.set_exception(error)
            else:
                op.future.set_result(value)

    def _settle_run_op(
        self,
        op: _Op,
        outcome: _Outcome,
        commit: PassCommit,
        resolutions: list[tuple[_Op, Any, BaseException | None]],
    ) -> None:
        attempt = op.attempts
        history = HistoryRecord(
            self.run.run_id,
            outcome.started_at,
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
                    ended_at=outcome.started_at + outcome.duration,
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
                    outcome.started_at,
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
        commit.steps.append(self._record(op, "FAILED", error=error, attempts=attempt + 1))
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                outcome.started_at,
                "STEP_FAILED",
                op.key,
                attempt,
                outcome.duration,
                {"error": error, "final": True},
            )
        )
        self._memo_done.add(op.hash)
        self._consumed.add(op.hash)
        resolutions.append((op, None, StepError(op.key, error["name"], error["message"])))

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
        text: str | None = None
        index: tuple[tuple[str, str], ...] = ()
        if op.expression is not None:
            trigger = self.state.events[0].payload() if self.state.events else {}
            prepared = prepare_match(op.expression, trigger)
            text, index = prepared.text, prepared.index_keys
        commit.steps.append(self._record(op, "PENDING", due_at=op.due_at, started_at=now))
        commit.waits.append(
            WaitRecord(
                wait_id=new_id(now),
                run_id=self.run.run_id,
                step_hash=op.hash,
                event_name=op.event_name,
                expression=text,
                index_path=index[0][0] if index else None,
                index_value=index[0][1] if index else None,
                expires_at=op.due_at,
                created_at=now,
            )
        )
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                now,
                "WAIT",
                op.key,
                data={"event": op.event_name, "if": op.expression, "until": op.due_at},
            )
        )
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
        if op.function_id not in self.engine.functions:
            error = {"name": "FunctionNotFound", "message": f"no function {op.function_id!r}"}
            commit.steps.append(self._record(op, "FAILED", error=error, attempts=1))
            commit.history.append(
                HistoryRecord(self.run.run_id, now, "STEP_FAILED", op.key, 0, 0.0, {"error": error})
            )
            self._memo_done.add(op.hash)
            self._consumed.add(op.hash)
            resolutions.append((op, None, StepError(op.key, error["name"], error["message"])))
            return
        event = self.engine.event_record(
            Event(name=FUNCTION_INVOKED, data=op.data or {}, user=op.user or {}), now
        )
        child = NewRun(new_id(now), op.function_id, (event.internal_id,), self.run.run_id, op.hash)
        commit.events.append(EventIngest(event))
        commit.child_runs.append(child)
        commit.steps.append(self._record(op, "PENDING", started_at=now))
        commit.history.append(
            HistoryRecord(
                self.run.run_id,
                now,
                "INVOKE",
                op.key,
                data={"function_id": op.function_id, "child_run_id": child.run_id},
            )
        )
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
        commit.events.extend(self.engine.plan(r) for r in records)
        ids = [r.internal_id for r in records]
        output = dumps(ids)
        commit.steps.append(
            self._record(op, "COMPLETED", output_json=output, started_at=now, ended_at=now)
        )
        commit.history.append(
            HistoryRecord(self.run.run_id, now, "SEND_EVENT", op.key, data={"event_ids": ids})
        )
        resolutions.append((op, ids, None))

    async def _attempt(self, op: _Op) -> _Outcome:
        """Execute one attempt of a ``run`` step; never raises."""
        fn = self.engine.step_mocks.get(op.step_id, op.fn)
        assert fn is not None
        self.ctx.attempt = op.attempts
        started = self.now()
        t0 = time.perf_counter()
        outcome = _Outcome(started_at=started)
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(*op.args, **op.kwargs)
            else:
                call = partial(fn, *op.args, **op.kwargs)
                value = await self.loop.run_in_executor(self.engine.step_threads, call)
                if inspect.isawaitable(value):
                    value = await value
            outcome.output_json = dumps(value, f"output of step {op.key!r}")
            limit = self.engine.limits.max_step_output_bytes
            if len(outcome.output_json) > limit:
                outcome.error = LimitExceededError(
                    "step_output",
                    f"output of step {op.key!r} is {len(outcome.output_json)} bytes, over the "
                    f"limit of {limit} bytes",
                )
        except (NonRetriableError, SerializationError) as exc:
            outcome.error = exc
        except RetryAfterError as exc:
            outcome.error = exc
            if op.attempts < self.fn.retries:
                outcome.retry_at = retry_after_time(exc, self.now(), op.attempts)
        except Exception as exc:
            outcome.error = exc
            if op.attempts < self.fn.retries:
                outcome.retry_at = self.now() + backoff_delay(op.attempts)
        outcome.duration = time.perf_counter() - t0
        return outcome

    # -- ends of a pass ---------------------------------------------------------------------------
    def _new_commit(self) -> PassCommit:
        commit = PassCommit(self.run.run_id, self.lease.token)
        if self.run.started_at is None and not self._start_recorded:
            self._start_recorded = True
            commit.history.append(HistoryRecord(self.run.run_id, self.now(), "RUN_STARTED"))
        if self._late_steps:
            commit.steps.extend(self._late_steps)
            self._late_steps = []
        return commit

    async def _commit(self, commit: PassCommit) -> None:
        now = self.now()
        engine = self.engine

        def job(tx: StoreTx) -> bool:
            with tx.savepoint():
                results = tx.commit_pass(commit, now, engine.wait_matches)
                if results is None:
                    return False
                engine.announce_cancellations(tx, results, now)
                return True

        if not await engine.writer.write(job):
            raise LeaseLostError(f"run {self.run.run_id} was cancelled during its pass")

    def _timed_out(self, at_start: bool = False) -> str | None:
        """Why the run must be cancelled now (a start timeout, checked when a pass begins, or a
        finish timeout), if it must."""
        run, now = self.run, self.now()
        start_timeout = run.start_timeout
        late = start_timeout is not None and now > run.created_at + start_timeout
        if at_start and run.started_at is None and late:
            return f"not started within {run.start_timeout:g}s (timeouts.start)"
        if self._finish_deadline is not None and now > self._finish_deadline:
            return f"not finished within {run.finish_timeout:g}s (timeouts.finish)"
        return None

    async def _cancel(self, reason: str) -> None:
        self._suspending = True
        await self.engine.writer.write(self.engine.cancel_job(self.run.run_id, reason, self.now()))

    def _release_blocked(self, error: BaseException) -> None:
        for future in self._blocked:
            if not future.done():
                future.set_exception(error)
        self._blocked = []

    def _release_ops(self, ops: list[_Op], error: BaseException) -> None:
        for op in ops:
            if not op.future.done():
                op.future.set_exception(error)

    async def _wait_out(self, task: asyncio.Future[Any]) -> None:
        """Let the function unwind after its blocked calls were released."""
        while not task.done():
            self._release_ops(self._new_ops, Suspended())
            self._new_ops = []
            await asyncio.wait({task}, timeout=0.05)
        if not task.cancelled():
            task.exception()  # retrieved: it is the Suspended/_Abort we raised

    async def _suspend(self, task: asyncio.Future[Any]) -> None:
        self._suspending = True
        kinds = self._suspend_kinds
        status = (
            "RETRYING"
            if "retry" in kinds
            else "WAITING"
            if kinds & {"wait", "invoke"}
            else "SLEEPING"
        )
        commit = self._new_commit()
        deadlines = list(self._deadlines)
        if self._finish_deadline is not None:
            deadlines.append(self._finish_deadline + 0.001)
        commit.end = RunEnd(status=status, due_at=min(deadlines, default=None))
        await self._commit(commit)
        self._release_blocked(Suspended())
        await self._wait_out(task)

    async def _finish(self, task: asyncio.Future[Any]) -> None:
        error = task.exception() if not task.cancelled() else None
        if error is None and not task.cancelled():
            try:
                output = dumps(task.result(), f"result of function {self.fn.id!r}")
            except SerializationError as exc:
                await self._fail_run(exc, None)
                return
            limit = self.engine.limits.max_step_output_bytes
            if len(output) > limit:
                await self._fail_run(
                    LimitExceededError(
                        "step_output",
                        f"result of function {self.fn.id!r} is {len(output)} bytes, over the "
                        f"limit of {limit} bytes",
                    ),
                    None,
                )
                return
            await self._complete(output)
            return
        if isinstance(error, Suspended | _Abort) or error is None:
            await self._fail_run(RuntimeError("function ended by an internal signal"), None)
            return
        retriable = not isinstance(error, NonRetriableError | StepError)
        attempt = self.run.attempt
        if retriable and attempt < self.fn.retries:
            now = self.now()
            retry_at = (
                retry_after_time(error, now, attempt)
                if isinstance(error, RetryAfterError)
                else now + backoff_delay(attempt)
            )
            commit = self._new_commit()
            commit.history.append(
                HistoryRecord(
                    self.run.run_id,
                    now,
                    "FUNCTION_FAILED",
                    attempt=attempt,
                    data={"error": error_dict(error), "retry_at": retry_at},
                )
            )
            commit.end = RunEnd(status="RETRYING", due_at=retry_at, attempt=attempt + 1)
            await self._commit(commit)
            return
        await self._fail_run(error, None)

    def _system_event(self, name: str, data: dict[str, Any]) -> EventIngest:
        """A system event about this run. It never triggers this same function, so a function
        listening to ``inngest/function.finished`` does not trigger itself forever."""
        record = EventRecord(new_id(self.now()), name, data, {}, None, self.now())
        planned = self.engine.plan(record)
        runs = tuple(r for r in planned.new_runs if r.function_id != self.fn.id)
        return EventIngest(record, runs)

    def _trigger_payload(self) -> dict[str, Any]:
        return self.state.events[0].payload() if self.state.events else {}

    async def _complete(self, output: bytes) -> None:
        commit = self._new_commit()
        now = self.now()
        commit.end = RunEnd(status="COMPLETED", output_json=output)
        commit.history.append(HistoryRecord(self.run.run_id, now, "RUN_COMPLETED"))
        commit.events.append(
            self._system_event(
                FUNCTION_FINISHED,
                {
                    "function_id": self.fn.id,
                    "run_id": self.run.run_id,
                    "event": self._trigger_payload(),
                    "result": loads(output),
                },
            )
        )
        self._wake_parent(commit, "COMPLETED", output, None)
        await self._commit(commit)

    async def _fail_run(self, error: BaseException, task: asyncio.Future[Any] | None) -> None:
        self._suspending = True
        commit = self._new_commit()
        now = self.now()
        details = error_dict(error)
        if isinstance(error, LimitExceededError):
            details["limit"] = error.limit
        commit.end = RunEnd(status="FAILED", error=details)
        commit.history.append(HistoryRecord(self.run.run_id, now, "RUN_FAILED", data=details))
        commit.events.append(
            self._system_event(
                FUNCTION_FAILED,
                {
                    "function_id": self.fn.id,
                    "run_id": self.run.run_id,
                    "event": self._trigger_payload(),
                    "error": {"name": details["name"], "message": details["message"]},
                },
            )
        )
        self._wake_parent(commit, "FAILED", None, details)
        await self._commit(commit)
        if task is not None:
            self._release_blocked(_Abort())
            await self._wait_out(task)

    def _wake_parent(
        self, commit: PassCommit, status: str, output: bytes | None, error: dict[str, Any] | None
    ) -> None:
        run = self.run
        if run.parent_run_id is None or run.parent_step_hash is None:
            return
        commit.wakes.append(Wake(run.parent_run_id, run.parent_step_hash, status, output, error))


__all__ = ["LeaseLostError", "PassExecutor", "Suspended", "step_hash"]
